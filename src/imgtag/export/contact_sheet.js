"use strict";
// Everything shown comes from the JSON blocks above and is put into the page with textContent:
// model output is text here, never markup.
(function () {
  const PAGE = 120;
  const meta = JSON.parse(document.getElementById("imgtag-meta").textContent);
  const rows = JSON.parse(document.getElementById("imgtag-data").textContent);
  const lists = new Set(meta.lists);
  const grid = document.getElementById("grid");
  const q = document.getElementById("q");
  const tagSelect = document.getElementById("tag");
  const statusBox = document.getElementById("statuses");
  const count = document.getElementById("count");
  const more = document.getElementById("more");
  const state = { text: "", tag: "", status: "" };
  let shown = [];
  let rendered = 0;

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function valueText(v) {
    if (v === null || v === undefined) return "";
    if (typeof v === "object") return JSON.stringify(v);
    return String(v);
  }

  function tagsOf(r) {
    const out = [];
    if (!r.fields) return out;
    for (const name of meta.fields) {
      const v = r.fields[name];
      if (lists.has(name) && Array.isArray(v)) for (const t of v) if (typeof t === "string" && t) out.push(t);
    }
    return out;
  }

  for (const r of rows) {
    r._tags = tagsOf(r);
    const parts = [r.path, r.status, r.duplicate_of || ""];
    if (r.fields) for (const name of meta.fields) parts.push(valueText(r.fields[name]));
    if (r.error) parts.push(valueText(r.error.type), valueText(r.error.message));
    r._hay = parts.join("\n").toLowerCase();
  }

  // Status buttons with counts; tag list by frequency.
  const byStatus = new Map();
  const tagCount = new Map();
  for (const r of rows) {
    byStatus.set(r.status, (byStatus.get(r.status) || 0) + 1);
    for (const t of new Set(r._tags)) tagCount.set(t, (tagCount.get(t) || 0) + 1);
  }
  const statusButtons = [];
  function addStatus(value, label) {
    const b = el("button", "", label);
    b.type = "button";
    b.dataset.status = value;
    b.setAttribute("aria-pressed", value === "" ? "true" : "false");
    b.addEventListener("click", () => { state.status = value; update(); });
    statusBox.appendChild(b);
    statusButtons.push(b);
  }
  addStatus("", "All " + rows.length);
  for (const s of ["ok", "failed", "skipped", "pending"]) if (byStatus.has(s)) addStatus(s, s + " " + byStatus.get(s));
  const topTags = [...tagCount.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, 500);
  for (const [t, n] of topTags) {
    const o = el("option", "", t + " (" + n + ")");
    o.value = t;
    tagSelect.appendChild(o);
  }
  if (!topTags.length) tagSelect.hidden = true;

  function card(r) {
    const c = el("article", "card " + r.status);
    const box = el("div", "thumb");
    if (r.thumb) {
      const img = document.createElement("img");
      img.loading = "lazy";
      img.decoding = "async";
      img.alt = r.path;
      img.addEventListener("error", () => { box.replaceChildren(el("div", "none", "no preview")); });
      img.src = r.thumb;
      box.appendChild(img);
    } else {
      box.appendChild(el("div", "none", r.no_preview));
    }
    c.appendChild(box);
    const body = el("div", "body");
    const top = el("div", "top");
    top.appendChild(el("div", "path", r.path));
    top.appendChild(el("span", "badge " + r.status, r.status));
    body.appendChild(top);
    if (r.fields) {
      const dl = el("dl");
      for (const name of meta.fields) {
        const v = r.fields[name];
        if (v === null || v === undefined || v === "" || (Array.isArray(v) && !v.length)) continue;
        dl.appendChild(el("dt", "", name));
        const dd = el("dd");
        if (Array.isArray(v) && lists.has(name)) {
          dd.className = "chips";
          for (const t of v) {
            const chip = el("button", "chip" + (t === state.tag ? " on" : ""), valueText(t));
            chip.type = "button";
            chip.title = "Show only images tagged " + valueText(t);
            chip.addEventListener("click", () => { state.tag = state.tag === t ? "" : valueText(t); update(); });
            dd.appendChild(chip);
          }
        } else {
          dd.textContent = valueText(v);
        }
        dl.appendChild(dd);
      }
      body.appendChild(dl);
    }
    if (r.error_text) body.appendChild(el("div", "error", r.error_text));
    if (r.duplicate_of) body.appendChild(el("div", "note", "same content as " + r.duplicate_of));
    c.appendChild(body);
    return c;
  }

  function renderMore() {
    const frag = document.createDocumentFragment();
    const end = Math.min(shown.length, rendered + PAGE);
    for (; rendered < end; rendered++) frag.appendChild(card(shown[rendered]));
    grid.appendChild(frag);
  }

  // The filter lives in the address (#q=...&tag=...&status=...), so a filtered view can be bookmarked.
  function readHash() {
    const h = new URLSearchParams(location.hash.slice(1));
    q.value = h.get("q") || "";
    state.tag = h.get("tag") || "";
    state.status = h.get("status") || "";
  }

  function writeHash() {
    const h = new URLSearchParams();
    if (q.value.trim()) h.set("q", q.value.trim());
    if (state.tag) h.set("tag", state.tag);
    if (state.status) h.set("status", state.status);
    const text = h.toString();
    if (text !== location.hash.slice(1)) history.replaceState(null, "", text ? "#" + text : location.pathname);
  }

  function update() {
    writeHash();
    state.text = q.value.trim().toLowerCase();
    tagSelect.value = state.tag;
    for (const b of statusButtons) b.setAttribute("aria-pressed", b.dataset.status === state.status ? "true" : "false");
    shown = rows.filter((r) => (!state.status || r.status === state.status)
      && (!state.tag || r._tags.includes(state.tag))
      && (!state.text || r._hay.includes(state.text)));
    grid.replaceChildren();
    rendered = 0;
    if (!shown.length) grid.appendChild(el("div", "empty", "No image matches this filter."));
    renderMore();
    count.textContent = shown.length === rows.length ? rows.length + " images"
      : shown.length + " of " + rows.length + " images";
  }

  let timer = 0;
  q.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(update, 120); });
  tagSelect.addEventListener("change", () => { state.tag = tagSelect.value; update(); });
  new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting) && rendered < shown.length) renderMore();
  }, { rootMargin: "800px" }).observe(more);
  window.addEventListener("hashchange", () => { readHash(); update(); });
  readHash();
  update();
})();
