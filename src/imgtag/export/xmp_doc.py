"""Build an XMP document, or merge imgtag's values into an existing one without losing anything else.

The merge is what makes sidecars safe to write next to a photographer's files: darktable's history,
Lightroom's develop settings (crs:), ratings, labels, the creator, the user's own keywords, title and
description all stay as they were. imgtag owns only what it wrote itself, which the caller passes from the
store (what it wrote last time) so it is replaced, not piled up:
  * the bag items (dc:subject, lr:hierarchicalSubject, dc:language) it added; every keyword is also in
    lr:hierarchicalSubject, which darktable reads instead of dc:subject;
  * the x-default and --lang items of the language alternatives it maps (dc:title, dc:description,
    the IPTC accessibility texts) while they hold its own text. Other languages stay.
Everything is built with lxml, so any model text is escaped by the serialiser; existing documents are
parsed with entities, DTDs and network access off (a sidecar is untrusted input).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from lxml import etree

from imgtag.config.options import option
from imgtag.export.xmp_digikam import TAGSLIST, with_tagslist
from imgtag.export.xmp_map import NS, PROPERTIES, XmpValues
from imgtag.util.words import plural
from imgtag.version import __version__

X_NS = "adobe:ns:meta/"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_INDENT = " "  # Adobe's and exiftool's style: one space per level
MAX_XMP_BYTES = 32 * 1024 * 1024  # darktable histories are large, but not this large

# The order our properties appear in, so the same values always give the same bytes.
_ORDER = list(PROPERTIES)
_LANG_TAG = re.compile(r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$")
SUBJECT = "dc:subject"
HIERARCHY = "lr:hierarchicalSubject"
DARKTABLE_OWN = "darktable|"  # darktable's own tags (format, changed...): never exported as keywords


class XmpError(ValueError):
    """An existing document imgtag will not touch (not XML, not XMP, has a DTD): one line for the user."""


@dataclass
class Merged:
    data: bytes
    # What imgtag wrote this time, to replace on the next export: bag items it added, and for a language
    # alternative the one text it wrote (so a later text there that is not one of ours is the user's).
    owned: dict[str, list[str]]
    kept: list[str] = field(default_factory=list)  # alternatives whose user text was kept instead of ours


@dataclass
class AltMerge:
    items: list[tuple[str, str]]
    ours: str | None  # the text imgtag wrote, None when it wrote nothing there
    kept_users: bool  # the user's own text stopped ours


def _clark(qname: str) -> str:
    prefix, local = qname.split(":")
    return f"{{{NS[prefix]}}}{local}"


_CLARK = {q: _clark(q) for q in PROPERTIES}


def lang_tag(lang: str | None) -> str | None:
    """The xml:lang for --lang, or None when it is absent or not a language tag."""
    if not lang or not _LANG_TAG.match(lang) or lang.lower() == "x-default":
        return None
    return lang


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                           huge_tree=False, remove_blank_text=False, strip_cdata=False)


def parse(data: bytes) -> etree._ElementTree:
    if len(data) > MAX_XMP_BYTES:
        raise XmpError(f"existing XMP is larger than {MAX_XMP_BYTES // 2**20} MB")
    # Some writers end the packet with a NUL byte (C-string style) after `<?xpacket end="w"?>`; exiftool and
    # the photo tools read past it, and so must we, or such an image never gets its tags.
    data = data.rstrip(b"\0")
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise XmpError(f"existing XMP is not valid XML ({exc.msg})") from None
    tree = root.getroottree()
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        # XMP never has a DTD; one here can only be an entity trick.
        raise XmpError("existing XMP has a DTD (refused: XMP never needs one)")
    if _rdf_of(root) is None:
        raise XmpError("existing file is XML but has no rdf:RDF (not XMP)")
    return tree


def _rdf_of(root: etree._Element) -> etree._Element | None:
    if root.tag == f"{{{RDF}}}RDF":
        return root
    return root.find(f"{{{RDF}}}RDF")


def new_tree() -> etree._ElementTree:
    meta = etree.Element(f"{{{X_NS}}}xmpmeta", nsmap={"x": X_NS})
    meta.set(f"{{{X_NS}}}xmptk", f"imgtag {__version__}")
    rdf = etree.SubElement(meta, f"{{{RDF}}}RDF", nsmap={"rdf": RDF})
    meta.text = "\n" + _INDENT
    rdf.tail = "\n"
    return meta.getroottree()


def merge(existing: bytes | None, values: XmpValues, *, lang: str | None,
          previous: dict[str, list[str]] | None, declaration: bool = True, overwrite_text: bool = False) -> Merged:
    """``existing`` (or a new document) with ``values`` merged in; raises XmpError for unusable input.

    ``previous`` is what imgtag wrote there last time (``Merged.owned`` then); ``overwrite_text`` replaces a
    title or description imgtag did not write (kept otherwise)."""
    tree = parse(existing) if existing is not None else new_tree()
    rdf = _rdf_of(tree.getroot())
    assert rdf is not None
    previous = previous or {}
    if TAGSLIST not in values.bags and _has(rdf, TAGSLIST):
        values = with_tagslist(values)
    touched = set(values.bags) | set(values.alts) | {p for p, items in previous.items() if items}
    if SUBJECT in touched:
        touched.add(HIERARCHY)  # every keyword goes into the hierarchy too (_flat_in_hierarchy)
    about = ""
    bag_items: dict[str, list[str]] = {}
    alt_items: dict[str, list[tuple[str, str]]] = {}
    for desc in rdf.findall(f"{{{RDF}}}Description"):
        about = about or desc.get(f"{{{RDF}}}about", "")
        changed = False
        for prop in _ORDER:
            if prop not in touched:
                continue
            clark = _CLARK[prop]
            if desc.get(clark) is not None:  # attribute shorthand (simple value)
                text = desc.attrib.pop(clark)
                changed = True
                _collect(prop, [("x-default", text)], bag_items, alt_items)
            for el in desc.findall(clark):
                _collect(prop, _items_of(el), bag_items, alt_items)
                _remove_keeping_layout(el)
                changed = True
        if changed and len(desc) == 0 and _only_about(desc):
            _remove_keeping_layout(desc)

    owned: dict[str, list[str]] = {}
    final_bags: dict[str, list[str]] = {}
    for prop in _ORDER:
        if PROPERTIES[prop] == "alt" or prop not in touched:
            continue
        kept, added = _merge_bag(bag_items.get(prop, []), values.bags.get(prop, []), set(previous.get(prop, [])))
        if added:
            owned[prop] = added
        if kept or added:
            final_bags[prop] = kept + added
    mirrors = _flat_in_hierarchy(final_bags)
    if mirrors:
        final_bags[HIERARCHY] = final_bags.get(HIERARCHY, []) + mirrors
        owned[HIERARCHY] = owned.get(HIERARCHY, []) + mirrors

    tag = lang_tag(lang)
    final_alts: dict[str, list[tuple[str, str]]] = {}
    kept_text: list[str] = []
    for prop in _ORDER:
        if PROPERTIES[prop] != "alt" or prop not in touched:
            continue
        alt = _merge_alt(alt_items.get(prop, []), values.alts.get(prop), set(previous.get(prop, [])),
                         tag if prop not in values.untranslated else None, overwrite_text)
        if alt.ours is not None:
            owned[prop] = [alt.ours]
        if alt.kept_users:
            kept_text.append(prop)
        if alt.items:
            final_alts[prop] = alt.items

    if final_bags or final_alts:
        _append_description(rdf, about, final_bags, final_alts)
    body = etree.tostring(tree, encoding="UTF-8", xml_declaration=declaration)
    return Merged(body if body.endswith(b"\n") else body + b"\n", owned, kept_text)


def _has(rdf: etree._Element, prop: str) -> bool:
    clark = _CLARK[prop]
    return any(desc.get(clark) is not None or desc.find(clark) is not None
               for desc in rdf.findall(f"{{{RDF}}}Description"))


def _collect(prop: str, items: list[tuple[str, str]], bags: dict[str, list[str]],
             alts: dict[str, list[tuple[str, str]]]) -> None:
    if PROPERTIES[prop] != "alt":
        bags.setdefault(prop, []).extend(text for _, text in items if text)
    else:
        have = alts.setdefault(prop, [])
        known = {lang.lower() for lang, _ in have}
        have.extend((lang, text) for lang, text in items if lang.lower() not in known)


def _items_of(el: etree._Element) -> list[tuple[str, str]]:
    """(xml:lang, text) of a property element: an rdf array's items, or its own text."""
    container = next((c for c in el if isinstance(c.tag, str)
                      and c.tag in (f"{{{RDF}}}Bag", f"{{{RDF}}}Seq", f"{{{RDF}}}Alt")), None)
    if container is None:
        return [(el.get(XML_LANG, "x-default"), (el.text or "").strip())] if (el.text or "").strip() else []
    return [(li.get(XML_LANG, "x-default"), li.text or "")
            for li in container.findall(f"{{{RDF}}}li") if (li.text or "").strip()]


def _merge_bag(existing: list[str], ours: list[str], mine: set[str]) -> tuple[list[str], list[str]]:
    """(the file's items that are not imgtag's earlier ones, without repeats; ours that are not among them)."""
    kept: list[str] = []
    seen: set[str] = set()
    for item in existing:
        key = item.casefold()
        if item in mine or key in seen:
            continue
        seen.add(key)
        kept.append(item)
    return kept, [item for item in ours if item.casefold() not in seen]


def _flat_in_hierarchy(bags: dict[str, list[str]]) -> list[str]:
    """The keywords of dc:subject that lr:hierarchicalSubject lacks, to add there as top-level entries.

    darktable (and digiKam without its TagsList) reads dc:subject only when lr:hierarchicalSubject is absent,
    so a keyword only in dc:subject is lost as soon as any hierarchy exists; darktable and Lightroom write
    every keyword to both. A keyword that is a level of a path (``Dresses`` of ``Category|Dresses``) is
    already there, as in Lightroom's own files. The user's flat keywords are added too: once imgtag has
    written a hierarchy, darktable would no longer see them otherwise."""
    levels = {level.casefold() for item in bags.get(HIERARCHY, []) if not item.startswith(DARKTABLE_OWN)
              for level in item.split("|")}
    out: list[str] = []
    for keyword in bags.get(SUBJECT, []):
        item = keyword.replace("|", "/")  # "|" separates levels: inside a keyword it would invent one
        if item.casefold() not in levels:
            levels.add(item.casefold())
            out.append(item)
    return out


def _merge_alt(items: list[tuple[str, str]], text: str | None, mine: set[str], tag: str | None,
               overwrite: bool) -> AltMerge:
    """One language alternative: imgtag's text as x-default, the user's own kept.

    imgtag owns the x-default and --lang entries only while they hold a text it wrote (``mine``, or the one
    it writes now); any other text there is the user's and stays unless ``overwrite``. An older imgtag wrote
    the same text under x-default and --lang: that pair is imgtag's too. With no other language in the file,
    one x-default entry is written (darktable shows a second copy as `X, lang="zh" X`); beside other
    languages, ours is also written under --lang so readers can tell which one it is."""
    low = tag.lower() if tag else None
    ours_langs = {"x-default", low} - {None}
    default = next((t for lang, t in items if lang.lower() == "x-default"), None)
    in_ours = [t for lang, t in items if lang.lower() in ours_langs]
    legacy = default is not None and low is not None and any(
        lang.lower() == low and t == default for lang, t in items)
    if text is None:  # nothing to write now: take back what imgtag wrote earlier
        return AltMerge([(lang, t) for lang, t in items if lang.lower() not in ours_langs or t not in mine],
                        None, False)
    users = any(t not in mine and t != text for t in in_ours) and not legacy
    if users and not overwrite:
        return AltMerge(items, None, True)
    others = [(lang, t) for lang, t in items if lang.lower() not in ours_langs]
    out = [("x-default", text), *others]
    if others and tag:
        out.append((tag, text))
    return AltMerge(out, text, False)


def _only_about(desc: etree._Element) -> bool:
    return all(name == f"{{{RDF}}}about" for name in desc.attrib)


def _remove_keeping_layout(el: etree._Element) -> None:
    # lxml drops an element's tail with it; the whitespace that closed the parent must survive, or
    # a second export of the same values would not give the same bytes.
    parent = el.getparent()
    prev = el.getprevious()
    if el.getnext() is None:
        if prev is not None:
            prev.tail = el.tail
        elif parent is not None:
            parent.text = el.tail
    parent.remove(el)


def _depth(el: etree._Element) -> int:
    return sum(1 for _ in el.iterancestors())


def _append_description(rdf: etree._Element, about: str, bags: dict[str, list[str]],
                        alts: dict[str, list[tuple[str, str]]]) -> None:
    used = {q.split(":")[0] for q in (*bags, *alts)}
    desc = etree.SubElement(rdf, f"{{{RDF}}}Description", nsmap={p: NS[p] for p in sorted(used)})
    desc.set(f"{{{RDF}}}about", about)
    for prop in _ORDER:
        if prop in bags:
            kind = "Seq" if PROPERTIES[prop] == "seq" else "Bag"
            container = etree.SubElement(etree.SubElement(desc, _CLARK[prop]), f"{{{RDF}}}{kind}")
            for item in bags[prop]:
                etree.SubElement(container, f"{{{RDF}}}li").text = item
        elif prop in alts:
            container = etree.SubElement(etree.SubElement(desc, _CLARK[prop]), f"{{{RDF}}}Alt")
            for lang, text in alts[prop]:
                li = etree.SubElement(container, f"{{{RDF}}}li")
                li.set(XML_LANG, lang)
                li.text = text
    level = _depth(desc)
    child_ws = "\n" + _INDENT * level
    close_ws = "\n" + _INDENT * (level - 1)
    prev = desc.getprevious()
    if prev is not None:
        prev.tail = child_ws
    else:
        rdf.text = child_ws
    desc.tail = close_ws
    etree.indent(desc, space=_INDENT, level=level)
    desc.tail = close_ws


def summary_of(data: bytes) -> dict[str, list[str] | list[tuple[str, str]]]:
    """imgtag's properties in a document as plain values (bag items; (lang, text) pairs), to compare two
    documents by meaning: exiftool wraps an embedded packet differently from how we wrote it."""
    rdf = _rdf_of(parse(data).getroot())
    assert rdf is not None
    bags: dict[str, list[str]] = {}
    alts: dict[str, list[tuple[str, str]]] = {}
    for desc in rdf.findall(f"{{{RDF}}}Description"):
        for prop in _ORDER:
            clark = _CLARK[prop]
            if desc.get(clark) is not None:
                _collect(prop, [("x-default", desc.get(clark, ""))], bags, alts)
            for el in desc.findall(clark):
                _collect(prop, _items_of(el), bags, alts)
    return {**bags, **alts}


_TEXT_NAMES = {"dc:title": "title", "dc:description": "description",
               "Iptc4xmpCore:AltTextAccessibility": "alt text",
               "Iptc4xmpCore:ExtDescrAccessibility": "extended description"}


def kept_note(fmt: str, kept: Counter[str], files: int, unit: str) -> str | None:
    """The summary line for texts of the user's that were kept, e.g. "xmp: kept 2 titles and 1 description
    that imgtag did not write (in 2 sidecars); --xmp-overwrite-text replaces them"; None when none were."""
    if not kept:
        return None
    parts = [plural(kept[prop], name) for prop, name in _TEXT_NAMES.items() if kept[prop]]
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return (f"{fmt}: kept {listed} that imgtag did not write (in {plural(files, unit)}); "
            f"{option('xmp_overwrite_text')} replaces them")


def failed_note(fmt: str, failed: list[tuple[str, str]], what: str, examples: int = 3, reasons: int = 5) -> str:
    """The summary line for files not written, grouped by reason so that each reason is said once and every
    file's reason can be found (the last line names them all, "why: see above"), e.g. "xmp-embed: 5 image(s)
    left unchanged: a.gif, b.gif and 2 more: not JPEG, ...; c.jpg: existing XMP is not valid XML (...)"."""
    groups: dict[str, list[str]] = {}
    for name, reason in failed:
        groups.setdefault(reason, []).append(name)
    parts = []
    for reason, names in list(groups.items())[:reasons]:
        more = f" and {len(names) - examples} more" if len(names) > examples else ""
        parts.append(f"{', '.join(names[:examples])}{more}: {reason}")
    rest = sum(len(names) for names in list(groups.values())[reasons:])
    tail = f"; {rest} more for other reasons" if rest else ""
    return f"{fmt}: {len(failed)} {what}: " + "; ".join(parts) + tail
