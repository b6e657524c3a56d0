"use strict";
// The review page: talks only to this server's JSON API (docs/review.md) with the token from the address.
// Every text from the store (model output, paths, errors) goes into the page with textContent, never as markup.
(function () {
  const PAGE = 60;
  const token = new URLSearchParams(location.search).get("token") || "";
  const $ = (id) => document.getElementById(id);
  const state = { offset: 0, total: 0, items: [], focus: 0, selected: new Set(), undo: [], fields: [],
    spec: {}, openId: null, preview: null, shownFilter: null };
  const filterIds = ["q", "tag", "status", "reviewed", "edited", "sort"];

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  async function api(method, path, body) {
    const init = { method, headers: { Authorization: "Bearer " + token } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error(data.error || ("the server answered " + response.status));
      error.status = response.status;
      throw error;
    }
    return data;
  }

  function toast(text, undoId) {
    $("toast-text").textContent = text;
    $("toast-undo").hidden = !undoId;
    $("toast-undo").dataset.undo = undoId || "";
    $("toast").hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { $("toast").hidden = true; }, 8000);
  }

  function remember(undoId) {
    if (undoId) state.undo.push(undoId);
    $("undo").disabled = state.undo.length === 0;
  }

  // -- filters, kept in the address's #fragment so a reload shows the same view -------------------------------

  function filters() {
    const f = {};
    for (const id of filterIds) {
      const v = $(id).value.trim();
      if (v && !(id === "sort" && v === "id")) f[id] = v;
    }
    if ($("near").checked) f.near_duplicates = "true";
    return f;
  }

  function saveView() {
    const params = new URLSearchParams(filters());
    if (state.offset) params.set("offset", String(state.offset));
    history.replaceState(null, "", location.pathname + location.search + "#" + params.toString());
  }

  function loadView() {
    const params = new URLSearchParams(location.hash.slice(1));
    for (const id of filterIds) $(id).value = params.get(id) || (id === "sort" ? "id" : "");
    $("near").checked = params.get("near_duplicates") === "true";
    state.offset = Number(params.get("offset") || 0) || 0;
  }

  // -- the grid ------------------------------------------------------------------------------------------------

  function valueNode(name, value) {
    const spec = state.spec[name] || {};
    if (Array.isArray(value) && spec.kind === "list") {
      const span = el("span");
      for (const item of value) span.appendChild(el("span", "chip", item));
      return span;
    }
    if (value === null || value === undefined) return el("span", "", "");
    return el("span", "", typeof value === "object" ? JSON.stringify(value) : value);
  }

  function card(item, index) {
    const node = el("article", "card");
    node.dataset.id = item.id;
    node.dataset.index = index;
    node.tabIndex = -1;
    if (state.selected.has(item.id)) node.classList.add("selected");
    if (index === state.focus) node.classList.add("focused");
    const img = el("img", "thumb");
    img.loading = "lazy";
    img.alt = "";
    img.src = "/images/" + item.id + "/thumb";
    node.appendChild(img);
    const body = el("div", "body");
    body.appendChild(el("p", "path", item.path));
    const badges = el("div", "badges");
    const pick = el("input");
    pick.type = "checkbox";
    pick.title = "Select for a bulk operation (x)";
    pick.checked = state.selected.has(item.id);
    pick.addEventListener("change", () => toggleSelect(item.id));
    badges.appendChild(pick);
    badges.appendChild(el("span", "badge " + item.status, item.status));
    if (item.reviewed) badges.appendChild(el("span", "badge reviewed", "✓ reviewed"));
    if (item.rejected) badges.appendChild(el("span", "badge rejected", "✗ rejected"));
    if (item.edited_fields.length) badges.appendChild(el("span", "badge edited", "edited"));
    if (item.queued) badges.appendChild(el("span", "badge queued", "queued for retry"));
    body.appendChild(badges);
    if (item.fields) {
      const dl = el("dl");
      for (const name of state.fields) {
        dl.appendChild(el("dt", "", name));
        const dd = el("dd", item.edited_fields.includes(name) ? "edited" : "");
        dd.appendChild(valueNode(name, item.fields[name]));
        dl.appendChild(dd);
      }
      body.appendChild(dl);
    }
    if (item.error) body.appendChild(el("p", "error", item.error.type + ": " + item.error.message));
    node.appendChild(body);
    node.addEventListener("click", (event) => {
      if (event.target === pick) return;
      setFocus(index);
    });
    node.addEventListener("dblclick", () => openEditor(item.id));
    return node;
  }

  function render() {
    const grid = $("grid");
    grid.textContent = "";
    state.items.forEach((item, i) => grid.appendChild(card(item, i)));
    const first = state.total ? state.offset + 1 : 0;
    const last = state.offset + state.items.length;
    $("count").textContent = state.total + " image" + (state.total === 1 ? "" : "s") + " match" +
      (state.total === 1 ? "es" : "") + (state.selected.size ? "; " + state.selected.size + " selected" : "");
    $("page-info").textContent = first + "–" + last + " of " + state.total;
    $("prev").disabled = state.offset === 0;
    $("next").disabled = last >= state.total;
    updateScope();
  }

  function filterKey() {
    return JSON.stringify(filters());
  }

  async function load(keepFocus) {
    saveView();
    state.shownFilter = filterKey();
    const params = new URLSearchParams(filters());
    params.set("offset", String(state.offset));
    params.set("limit", String(PAGE));
    try {
      const data = await api("GET", "/api/images?" + params.toString());
      state.total = data.total;
      state.items = data.items;
      if (!keepFocus || state.focus >= state.items.length) state.focus = Math.min(state.focus, Math.max(0, state.items.length - 1));
      render();
    } catch (error) {
      $("count").textContent = error.message;
    }
  }

  function setFocus(index) {
    if (!state.items.length) return;
    state.focus = Math.max(0, Math.min(index, state.items.length - 1));
    for (const node of document.querySelectorAll(".card.focused")) node.classList.remove("focused");
    const node = document.querySelector('.card[data-index="' + state.focus + '"]');
    if (node) {
      node.classList.add("focused");
      node.scrollIntoView({ block: "nearest" });
    }
    if (state.openId !== null) openEditor(state.items[state.focus].id);
  }

  function focused() { return state.items[state.focus]; }

  function toggleSelect(id) {
    if (state.selected.has(id)) state.selected.delete(id); else state.selected.add(id);
    render();
  }

  function replaceItem(item) {
    const i = state.items.findIndex((x) => x.id === item.id);
    if (i >= 0) state.items[i] = item;
    render();
  }

  // -- single edits --------------------------------------------------------------------------------------------

  async function patch(id, body, message) {
    try {
      const item = await api("PATCH", "/api/images/" + id, body);
      remember(item.undo_id);
      replaceItem(item);
      if (message) toast(message, item.undo_id);
      $("editor-problem").textContent = "";
      if (state.openId === id) await openEditor(id);
      return item;
    } catch (error) {
      $("editor-problem").textContent = "Not saved: " + error.message;
      toast("Not saved: " + error.message);
      return null;
    }
  }

  async function approveAndNext() {
    const item = focused();
    if (!item || item.status !== "ok") return;
    // Move on at once: a fast typist's next "a" approves the next image, not this one again.
    setFocus(state.focus + 1);
    await patch(item.id, { reviewed: true }, "Approved " + item.path);
  }

  async function reject() {
    const item = focused();
    if (item && item.status === "ok") await patch(item.id, { rejected: true }, "Rejected " + item.path);
  }

  async function undo(undoId) {
    const id = undoId || state.undo.pop();
    if (undoId) state.undo = state.undo.filter((x) => x !== Number(undoId));
    remember(null);
    if (!id) return;
    try {
      const result = await api("POST", "/api/undo", { undo_id: Number(id) });
      toast("Undone: " + result.changed + " image" + (result.changed === 1 ? "" : "s") + " restored");
      await load(true);
      await loadTags();
      if (state.openId !== null) await openEditor(state.openId);
    } catch (error) {
      toast("Could not undo: " + error.message);
    }
  }

  // -- the editor ----------------------------------------------------------------------------------------------

  function limitNote(input, max) {
    const note = el("div", "limit");
    const update = () => {
      note.textContent = [...input.value].length + " / " + max;
      note.classList.toggle("over", [...input.value].length > max);
    };
    input.addEventListener("input", update);
    update();
    return note;
  }

  function chipsEditor(spec, values) {
    const box = el("div", "chips");
    const items = [...(values || [])];
    const input = el("input");
    input.setAttribute("list", "vocab");
    input.placeholder = "add…";
    input.setAttribute("aria-label", "Add to " + spec.name);
    const count = el("div", "limit");
    const draw = () => {
      for (const chip of box.querySelectorAll(".chip")) chip.remove();
      items.forEach((text, i) => {
        const chip = el("span", "chip", text);
        const remove = el("button", "", "×");
        remove.type = "button";
        remove.title = "Remove " + text;
        remove.addEventListener("click", () => { items.splice(i, 1); draw(); });
        chip.appendChild(remove);
        box.insertBefore(chip, input);
      });
      const bounds = [];
      if (spec.min_items) bounds.push("at least " + spec.min_items);
      if (spec.max_items) bounds.push("at most " + spec.max_items);
      count.textContent = items.length + " item" + (items.length === 1 ? "" : "s") + (bounds.length ? " (" + bounds.join(", ") + ")" : "");
      count.classList.toggle("over", Boolean((spec.max_items && items.length > spec.max_items) || (spec.min_items && items.length < spec.min_items)));
    };
    const add = () => {
      const text = input.value.replace(/,$/, "").trim();
      if (text && !items.includes(text)) items.push(text);
      input.value = "";
      draw();
    };
    input.addEventListener("keydown", (event) => {
      if ((event.key === "Enter" && !event.ctrlKey) || event.key === ",") {
        event.preventDefault();
        add();
      } else if (event.key === "Backspace" && !input.value && items.length) {
        items.pop();
        draw();
      }
    });
    input.addEventListener("change", () => { if (input.value.trim()) add(); });
    box.appendChild(input);
    draw();
    return { node: box, extra: count, value: () => { if (input.value.trim()) add(); return [...items]; }, input };
  }

  function fieldEditor(spec, value) {
    const wrap = el("div", "field");
    const label = el("label", "", spec.name);
    wrap.appendChild(label);
    if (spec.description) wrap.appendChild(el("div", "desc", spec.description));
    let get;
    let focusable;
    if (spec.kind === "list") {
      const chips = chipsEditor(spec, value);
      wrap.appendChild(chips.node);
      wrap.appendChild(chips.extra);
      get = chips.value;
      focusable = chips.input;
    } else if (spec.kind === "enum") {
      const select = el("select");
      for (const choice of spec.choices) {
        const option = el("option", "", choice);
        option.value = JSON.stringify(choice);
        select.appendChild(option);
      }
      select.value = JSON.stringify(value);
      wrap.appendChild(select);
      get = () => JSON.parse(select.value);
      focusable = select;
    } else if (spec.kind === "boolean") {
      const box = el("input");
      box.type = "checkbox";
      box.checked = Boolean(value);
      wrap.appendChild(box);
      get = () => box.checked;
      focusable = box;
    } else if (spec.kind === "number") {
      const input = el("input");
      input.type = "number";
      input.step = "any";
      input.value = value === null || value === undefined ? "" : String(value);
      wrap.appendChild(input);
      get = () => (input.value === "" ? null : Number(input.value));
      focusable = input;
    } else if (spec.kind === "text") {
      const long = !spec.max_length || spec.max_length > 80;
      const input = el(long ? "textarea" : "input");
      if (!long) input.type = "text";
      input.value = value === null || value === undefined ? "" : String(value);
      wrap.appendChild(input);
      if (spec.max_length) wrap.appendChild(limitNote(input, spec.max_length));
      get = () => input.value;
      focusable = input;
    } else {
      const input = el("textarea");
      input.value = JSON.stringify(value, null, 1);
      wrap.appendChild(input);
      get = () => JSON.parse(input.value);
      focusable = input;
    }
    label.addEventListener("click", () => focusable.focus());
    focusable.dataset.field = spec.name;
    return { node: wrap, get, focusable };
  }

  async function openEditor(id, focusField) {
    state.openId = id;
    $("layout").classList.add("editing");
    $("detail").hidden = false;
    let item;
    try {
      item = await api("GET", "/api/images/" + id);
    } catch (error) {
      toast(error.message);
      return;
    }
    $("detail-path").textContent = item.path;
    $("detail-img").src = "/images/" + id + "/original";
    $("detail-error").textContent = item.error ? item.error.type + ": " + item.error.message : "";
    const form = $("editor");
    form.textContent = "";
    state.editors = {};
    if (item.fields) {
      for (const name of state.fields) {
        const editor = fieldEditor(state.spec[name] || { name, kind: "json" }, item.fields[name]);
        state.editors[name] = editor;
        form.appendChild(editor.node);
      }
    }
    $("save").disabled = !item.fields;
    $("approve").disabled = item.status !== "ok";
    $("reject").disabled = item.status !== "ok";
    $("approve").textContent = item.reviewed ? "Unapprove" : "Approve";
    $("retry").disabled = item.queued;
    $("retry").textContent = item.queued ? "Queued for imgtag retry" : "Retry this image";
    $("editor-problem").textContent = "";
    state.openItem = item;
    await loadHistory(id);
    if (focusField) {
      const first = state.editors[state.fields[0]];
      if (first) first.focusable.focus();
    }
    state.renders = (state.renders || 0) + 1;
    $("detail").dataset.renders = String(state.renders);  // lets a test (or a person's script) wait for it
  }

  function closeEditor() {
    state.openId = null;
    $("detail").hidden = true;
    $("layout").classList.remove("editing");
  }

  async function save() {
    const item = state.openItem;
    if (!item || !item.fields) return;
    const fields = {};
    try {
      for (const name of state.fields) {
        const value = state.editors[name].get();
        if (JSON.stringify(value) !== JSON.stringify(item.fields[name])) fields[name] = value;
      }
    } catch (error) {
      $("editor-problem").textContent = "Not saved: " + error.message;
      return;
    }
    if (!Object.keys(fields).length) {
      toast("Nothing changed");
      return;
    }
    await patch(item.id, { fields }, "Saved " + item.path);
    await loadTags();
  }

  async function loadHistory(id) {
    const list = $("history");
    list.textContent = "";
    const data = await api("GET", "/api/images/" + id + "/history").catch(() => ({ versions: [] }));
    const versions = data.versions;
    versions.forEach((v, i) => {
      const li = el("li");
      const kind = { model: "model's answer", edit: "edit", bulk: "bulk edit", restore: "restored", undo: "undo" }[v.kind] || v.kind;
      li.appendChild(el("strong", "", "v" + v.version + " " + kind));
      li.appendChild(el("span", "when", " " + new Date(v.at).toLocaleString()));
      if (v.reviewed) li.appendChild(el("span", "", " ✓"));
      const previous = i > 0 ? versions[i - 1].fields || {} : {};
      const changed = Object.keys(v.fields || {}).filter((k) => i > 0 && JSON.stringify(v.fields[k]) !== JSON.stringify(previous[k]));
      if (changed.length) {
        const what = el("div");
        for (const name of changed) {
          const value = v.fields[name];
          what.appendChild(el("div", "", name + ": " + (Array.isArray(value) ? value.join(", ") : JSON.stringify(value))));
        }
        li.appendChild(what);
      }
      if (i < versions.length - 1) {
        const restore = el("button", "", "Restore");
        restore.type = "button";
        restore.addEventListener("click", async () => {
          try {
            const item = await api("POST", "/api/images/" + id + "/restore", { version: v.version });
            remember(item.undo_id);
            replaceItem(item);
            toast("Restored v" + v.version, item.undo_id);
            await openEditor(id);
          } catch (error) {
            toast("Could not restore: " + error.message);
          }
        });
        li.appendChild(restore);
      }
      list.appendChild(li);
    });
  }

  // -- bulk ----------------------------------------------------------------------------------------------------

  function updateScope() {
    const scope = $("bulk-scope");
    const was = scope.value;
    scope.textContent = "";
    const all = el("option", "", "all " + state.total + " matching the filter");
    all.value = "filter";
    scope.appendChild(all);
    if (state.selected.size) {
      const sel = el("option", "", "the " + state.selected.size + " selected");
      sel.value = "selected";
      scope.appendChild(sel);
    }
    scope.value = was === "selected" && state.selected.size ? "selected" : "filter";
  }

  function bulkFields() {
    const op = $("bulk-op").value;
    const names = ["add_tag", "remove_tag", "rename_tag"].includes(op)
      ? state.fields.filter((n) => (state.spec[n] || {}).kind === "list") : state.fields;
    const select = $("bulk-field");
    const was = select.value;
    select.textContent = "";
    for (const name of names) {
      const option = el("option", "", name);
      option.value = name;
      select.appendChild(option);
    }
    if (names.includes(was)) select.value = was;
    select.hidden = op === "approve";
    const placeholders = { add_tag: ["tag", null], remove_tag: ["tag", null], rename_tag: ["from", "to"],
      set: ["value", null], replace: ["find", "replace with"], approve: [null, null] }[op];
    $("bulk-a").hidden = !placeholders[0];
    $("bulk-a").placeholder = placeholders[0] || "";
    $("bulk-b").hidden = !placeholders[1];
    $("bulk-b").placeholder = placeholders[1] || "";
    $("bulk-regex-label").hidden = op !== "replace";
    resetPreview();
  }

  function resetPreview() {
    state.preview = null;
    $("bulk-apply").disabled = true;
    $("bulk-count").textContent = "";
  }

  function bulkBody() {
    const op = $("bulk-op").value;
    const body = { op };
    const field = $("bulk-field").value;
    const a = $("bulk-a").value;
    const b = $("bulk-b").value;
    if (op !== "approve") body.field = field;
    if (op === "add_tag" || op === "remove_tag") body.tag = a;
    if (op === "rename_tag") { body.from = a; body.to = b; }
    if (op === "set") {
      const spec = state.spec[field] || {};
      body.value = spec.kind === "list" ? a.split(",").map((s) => s.trim()).filter(Boolean)
        : spec.kind === "number" ? Number(a) : spec.kind === "boolean" ? a === "true" : a;
    }
    if (op === "replace") { body.pattern = a; body.replacement = b; body.regex = $("bulk-regex").checked; }
    if ($("bulk-scope").value === "selected") body.ids = [...state.selected];
    else body.filter = filters();
    return body;
  }

  async function previewBulk(body) {
    try {
      const result = await api("POST", "/api/bulk", { ...body, dry_run: true });
      state.preview = body;
      let text = "will change " + result.changed + " image" + (result.changed === 1 ? "" : "s");
      if (result.refused) text += "; " + result.refused + " refused (" + result.reason + ")";
      $("bulk-count").textContent = text;
      $("bulk-apply").disabled = result.changed === 0;
      return result;
    } catch (error) {
      $("bulk-count").textContent = error.message;
      return null;
    }
  }

  async function applyBulk() {
    if (!state.preview) return;
    const body = state.preview;
    resetPreview();
    try {
      const result = await api("POST", "/api/bulk", body);
      remember(result.undo_id);
      toast("Changed " + result.changed + " image" + (result.changed === 1 ? "" : "s"), result.undo_id);
      await load(true);
      await loadTags();
      if (state.openId !== null) await openEditor(state.openId);
    } catch (error) {
      toast("Not applied: " + error.message);
    }
  }

  // -- tags panel ----------------------------------------------------------------------------------------------

  async function loadTags() {
    const tags = await api("GET", "/api/tags").catch(() => []);
    const list = $("tags");
    list.textContent = "";
    const vocab = $("vocab");
    vocab.textContent = "";
    const current = $("tag").value;
    for (const t of tags) {
      const option = el("option");
      option.value = t.tag;
      vocab.appendChild(option);
    }
    for (const t of tags.slice(0, 300)) {
      const li = el("li", t.tag === current ? "active" : "");
      const name = el("button", "tagname", t.tag);
      name.type = "button";
      name.title = "Show images tagged " + t.tag;
      name.addEventListener("click", () => {
        $("tag").value = $("tag").value === t.tag ? "" : t.tag;
        state.offset = 0;
        load();
        loadTags();
      });
      li.appendChild(name);
      li.appendChild(el("span", "tagcount", t.count));
      const edit = el("button", "tagedit", "✎");
      edit.type = "button";
      edit.title = "Rename " + t.tag + " on every image";
      edit.addEventListener("click", () => renameInPlace(li, t));
      li.appendChild(edit);
      list.appendChild(li);
    }
  }

  function renameInPlace(li, t) {
    li.textContent = "";
    const input = el("input");
    input.value = t.tag;
    input.setAttribute("aria-label", "New name for " + t.tag);
    li.appendChild(input);
    input.focus();
    input.select();
    input.addEventListener("keydown", async (event) => {
      if (event.key === "Escape") { event.stopPropagation(); loadTags(); return; }
      if (event.key !== "Enter") return;
      event.preventDefault();
      const to = input.value.trim();
      if (!to || to === t.tag) { loadTags(); return; }
      $("bulk-op").value = "rename_tag";
      bulkFields();
      $("bulk-field").value = t.field;
      $("bulk-a").value = t.tag;
      $("bulk-b").value = to;
      $("bulk-scope").value = "filter";
      await previewBulk({ op: "rename_tag", field: t.field, from: t.tag, to, filter: {} });
      $("bulk-count").textContent += " (every image) — Apply to rename";
      loadTags();
    });
  }

  // -- keyboard ------------------------------------------------------------------------------------------------

  function typing(target) {
    return target && (["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName) || target.isContentEditable);
  }

  document.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && state.openId !== null) {
      event.preventDefault();
      save();
      return;
    }
    if (event.key === "Escape") {
      if (typing(document.activeElement)) document.activeElement.blur();
      else if (!$("keys").hidden) toggleKeys();
      else if (state.openId !== null) closeEditor();
      return;
    }
    if (typing(event.target) || event.altKey || ((event.ctrlKey || event.metaKey) && event.key !== "z")) return;
    const item = focused();
    const keys = {
      j: () => setFocus(state.focus + 1), ArrowRight: () => setFocus(state.focus + 1),
      k: () => setFocus(state.focus - 1), ArrowLeft: () => setFocus(state.focus - 1),
      Enter: () => item && openEditor(item.id, true), e: () => item && openEditor(item.id, true),
      a: approveAndNext, r: reject, x: () => item && toggleSelect(item.id),
      u: () => undo(), z: () => (event.ctrlKey || event.metaKey) && undo(),
      n: () => !$("next").disabled && page(1), p: () => !$("prev").disabled && page(-1),
      "/": () => $("q").focus(), "?": toggleKeys,
    };
    const action = keys[event.key];
    if (action) {
      event.preventDefault();
      action();
    }
  });

  function toggleKeys() {
    $("keys").hidden = !$("keys").hidden;
    $("help-toggle").setAttribute("aria-expanded", String(!$("keys").hidden));
  }

  function page(step) {
    state.offset = Math.max(0, state.offset + step * PAGE);
    state.focus = 0;
    load();
  }

  // -- wiring --------------------------------------------------------------------------------------------------

  let typingTimer = null;

  // A `change` also fires when a filter field merely loses focus, after its `input` events already loaded the
  // new filter: only a filter that differs from the one shown starts over (page, focus, the bulk preview).
  function filterEdited() {
    if (filterKey() === state.shownFilter) return;
    state.offset = 0;
    state.focus = 0;
    resetPreview();
    load();
    loadTags();
  }

  for (const id of filterIds) {
    for (const kind of id === "q" || id === "tag" ? ["input", "change"] : ["change"]) {
      $(id).addEventListener(kind, () => {
        clearTimeout(typingTimer);
        typingTimer = setTimeout(filterEdited, 200);
      });
    }
  }
  $("near").addEventListener("change", () => { state.offset = 0; resetPreview(); load(); });
  $("refresh").addEventListener("click", () => { load(true); loadTags(); });
  $("undo").addEventListener("click", () => undo());
  $("toast-undo").addEventListener("click", () => { $("toast").hidden = true; undo($("toast-undo").dataset.undo); });
  $("help-toggle").addEventListener("click", toggleKeys);
  $("prev").addEventListener("click", () => page(-1));
  $("next").addEventListener("click", () => page(1));
  $("detail-close").addEventListener("click", closeEditor);
  $("save").addEventListener("click", save);
  $("approve").addEventListener("click", () => {
    const item = state.openItem;
    if (item) patch(item.id, { reviewed: !item.reviewed }, (item.reviewed ? "Unapproved " : "Approved ") + item.path);
  });
  $("reject").addEventListener("click", () => {
    const item = state.openItem;
    if (item) patch(item.id, { rejected: !item.rejected }, "Rejected " + item.path);
  });
  $("retry").addEventListener("click", async () => {
    const item = state.openItem;
    if (!item) return;
    try {
      replaceItem(await api("POST", "/api/images/" + item.id + "/retry", {}));
      toast("Queued: `imgtag retry` will ask the model again for " + item.path);
      await openEditor(item.id);
    } catch (error) {
      toast(error.message);
    }
  });
  $("bulk-op").addEventListener("change", bulkFields);
  for (const id of ["bulk-scope", "bulk-field", "bulk-a", "bulk-b", "bulk-regex"]) $(id).addEventListener("input", resetPreview);
  $("bulk").addEventListener("submit", (event) => { event.preventDefault(); previewBulk(bulkBody()); });
  $("bulk-apply").addEventListener("click", applyBulk);
  window.addEventListener("hashchange", () => { loadView(); load(); });

  async function start() {
    try {
      const target = await api("GET", "/api/target");
      state.fields = target.fields.map((f) => f.name);
      for (const f of target.fields) state.spec[f.name] = f;
      $("target").textContent = target.preset + " · " + target.provider + " " + target.model +
        (target.lang ? " · " + target.lang : "") + " · " + target.out;
    } catch (error) {
      $("count").textContent = error.message;
      return;
    }
    loadView();
    bulkFields();
    await load();
    await loadTags();
    document.body.dataset.ready = "true";
  }
  start();
})();
