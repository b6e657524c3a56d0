"""darktable reads our sidecars whole: darktable-cli (Debian package `darktable`, installed by .ci/system-deps)
imports photo.jpg.xmp and exports a JPEG; every keyword of the results row and every tag the user had must be
in that JPEG's dc:subject. darktable (exif.cc) takes tags from lr:hierarchicalSubject and reads dc:subject only
when that is absent, so a flat keyword missing from hierarchicalSubject is lost there."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from imgtag.export.xmp_sidecar import write_xmp
from imgtag.store import Store
from xmphelp import DATA, as_list, context, photo, row, tags

DARKTABLE = shutil.which("darktable-cli")
needs_darktable = pytest.mark.skipif(
    DARKTABLE is None, reason="darktable-cli is not installed (.ci/system-deps installs the darktable package)")

FIELDS = {"tags": ["连衣裙", "碎花", "summer dress"], "category": "Dresses", "description": "夏季碎花连衣裙",
          "color": "red", "style": "boho"}
ROW_KEYWORDS = ["连衣裙", "碎花", "summer dress", "Dresses", "red", "boho"]
USER_TAGS = ["家人", "sunset"]  # the darktable fixture's own tags (家人 only in dc:subject, as older tools write)


def _darktable_export(image: Path, sidecar: Path, tmp_path: Path) -> dict:
    out = tmp_path / f"{image.stem}-export.jpg"
    done = subprocess.run([DARKTABLE, str(image), str(sidecar), str(out), "--core", "--configdir",
                           str(tmp_path / f"{image.stem}-dtconfig")],
                          capture_output=True, check=False, timeout=120)
    assert done.returncode == 0 and out.exists(), done.stderr.decode(errors="replace")[-2000:]
    return tags(out, "-XMP-dc:all")


@needs_darktable
def test_darktable_export_keeps_every_keyword_fresh_and_merged(tmp_path: Path) -> None:
    with Store(tmp_path / "out") as store:
        fresh = photo(tmp_path / "in", "fresh.jpg")
        merged = photo(tmp_path / "in", "DSC_0042.jpg")
        shutil.copyfile(DATA / "darktable.jpg.xmp", tmp_path / "in" / "DSC_0042.jpg.xmp")
        write_xmp([row(fresh, FIELDS, preset="ecommerce"), row(merged, FIELDS, preset="ecommerce")],
                  context(store, lang="zh"))

    got = _darktable_export(fresh, tmp_path / "in" / "fresh.jpg.xmp", tmp_path)
    subject = as_list(got["XMP-dc:Subject"])
    assert set(ROW_KEYWORDS) <= set(subject), subject
    # one language: one x-default entry, which darktable shows as the text alone (not `X, lang="zh" X`)
    assert got["XMP-dc:Title"] == "夏季碎花连衣裙" and "XMP-dc:Title-zh" not in got, got

    got = _darktable_export(merged, tmp_path / "in" / "DSC_0042.jpg.xmp", tmp_path)
    subject = as_list(got["XMP-dc:Subject"])
    assert set(ROW_KEYWORDS + USER_TAGS) <= set(subject), subject


def test_hierarchical_subject_holds_every_flat_keyword_as_darktable_reads_it(tmp_path: Path) -> None:
    """What darktable reads, checked with exiv2 (libexiv2 is darktable's XMP reader): every keyword in
    dc:subject is in lr:hierarchicalSubject as itself or as a level of a path; the user's entries stay; a
    re-export replaces only what imgtag added."""
    exiv2 = shutil.which("exiv2")
    assert exiv2, "exiv2 is needed to read sidecars as darktable does (.ci/system-deps)"

    def hierarchical(path: Path) -> list[str]:
        done = subprocess.run([exiv2, "-PXv", "-K", "Xmp.lr.hierarchicalSubject", str(path)],
                              capture_output=True, check=False)
        return done.stdout.decode("utf-8").strip().split(", ")

    with Store(tmp_path / "out") as store:
        fresh = photo(tmp_path, "fresh.jpg")
        merged = photo(tmp_path, "DSC_0042.jpg")
        shutil.copyfile(DATA / "darktable.jpg.xmp", tmp_path / "DSC_0042.jpg.xmp")
        ctx = context(store, lang="zh")
        write_xmp([row(fresh, FIELDS, preset="ecommerce"), row(merged, FIELDS, preset="ecommerce")], ctx)
        # the category, colour and style are levels of their paths: not repeated at the top, as Lightroom writes them
        assert hierarchical(tmp_path / "fresh.jpg.xmp") == [
            "Category|Dresses", "Color|red", "Style|boho", "连衣裙", "碎花", "summer dress"]
        user = ["darktable|format|jpg", "darktable|changed", "places|coast|sunset"]
        # 家人 was only in the user's dc:subject: darktable stopped reading it once hierarchicalSubject existed
        assert hierarchical(tmp_path / "DSC_0042.jpg.xmp") == [
            *user, "Category|Dresses", "Color|red", "Style|boho", "家人", "连衣裙", "碎花", "summer dress"]

        write_xmp([row(merged, dict(FIELDS, tags=["长裙"], color="blue"), preset="ecommerce")], ctx)
        assert hierarchical(tmp_path / "DSC_0042.jpg.xmp") == [
            *user, "Category|Dresses", "Color|blue", "Style|boho", "家人", "长裙"]
        assert tags(tmp_path / "DSC_0042.jpg.xmp")["XMP-dc:Subject"] == [
            "sunset", "家人", "长裙", "Dresses", "blue", "boho"]
