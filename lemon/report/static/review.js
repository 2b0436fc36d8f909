/* The review part of lemon's report.html: pages of cards built on demand from report_files/ (written by
   lemon/report/review.py), decisions kept in localStorage per run and downloaded as decisions.csv.
   Works from a file:// page: data comes as <script> files (a file:// page may not fetch()), images are
   plain <img> URLs the browser requests only for the cards on the page. */
(function () {
  "use strict";
  var META = JSON.parse(document.getElementById("lemon-meta").textContent);
  var INDEX = window.LEMON_INDEX;
  var STORE_KEY = "lemon-review:" + META.run_key;
  var DECISIONS = { w: "wrong", r: "right", u: "unsure" };
  var TERM_COLOURS = { d_mm: "#4c72b0", s_n: "#dd8452", s_m: "#55a868" };
  var TERM_PREFIX = { d_mm: "", s_n: "\u03b2\u00b7", s_m: "\u03b3\u00b7" };
  var CSV_HEADER = ["row", "image", "decision", "corrected", "audit", "reviewed_at", "split"];
  var chunks = {}; // "view/n" -> the cards of data file n of a view
  var waiting = {}; // "view/n" -> {promise, resolve, reject} while its <script> loads
  var state = { view: "flagged", list: [], page: 0, size: 25, focus: 0, cards: [], token: 0, scroll: false, loading: true };
  var members = {}; // view -> Set of scores.csv positions (for the progress line)
  var decisions = {};
  var saveTimer = null;

  function $(id) { return document.getElementById(id); }

  function url(u) { return u && u.charAt(0) === "~" ? META.url_base + u.slice(1) : u; } // see review.py


  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k];
      else if (k === "className") node.className = attrs[k];
      else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c) node.appendChild(c); });
    return node;
  }

  function num(v) {
    if (v === null || v === undefined || !isFinite(v)) return "-";
    var a = Math.abs(v);
    return a >= 1e3 || (a > 0 && a < 1e-3) ? Number(v).toPrecision(3) : Number(v).toFixed(3);
  }

  function status(message) {
    var box = $("status");
    box.textContent = message || "";
    box.hidden = !message;
  }

  // ------------------------------------------------------------------ decisions (localStorage, per run)
  function loadDecisions() {
    try {
      var raw = window.localStorage.getItem(STORE_KEY);
      return raw ? JSON.parse(raw) : {};
    } catch (err) {
      status("This browser does not keep decisions (" + err.name + "): download them before closing the page.");
      return {};
    }
  }

  function saveNow() {
    clearTimeout(saveTimer);
    saveTimer = null;
    try {
      window.localStorage.setItem(STORE_KEY, JSON.stringify(decisions));
    } catch (err) {
      status("The browser did not keep the last decisions (" + err.name + ", storage full?): click " +
        "Download decisions now to keep them.");
    }
  }

  function saveSoon() {
    clearTimeout(saveTimer);
    saveTimer = setTimeout(saveNow, 250);
  }

  function record(card, decision) {
    var input = inputOf(card);
    decisions[card.p] = {
      d: decision, c: input ? input.value : card.v, o: card.t, t: new Date().toISOString().replace(/\.\d{3}Z$/, "Z"),
      r: card.r, f: card.f, s: card.s
    };
  }

  function setDecision(card, decision) {
    if (decision === null) delete decisions[card.p];
    else record(card, decision);
    saveNow();
    paint(card);
    progress();
  }

  function csvField(value) {
    var v = value === null || value === undefined ? "" : String(value);
    return /[",\r\n]/.test(v) ? '"' + v.replace(/"/g, '""') + '"' : v;
  }

  function decisionsCsv() {
    var lines = [CSV_HEADER.join(",")];
    Object.keys(decisions).map(Number).sort(function (a, b) { return a - b; }).forEach(function (p) {
      var r = decisions[p];
      var corrected = r.d === "wrong" && r.c.trim() !== r.o ? r.c.trim() : "";
      var audit = members.audit.has(p) ? 1 : 0; // the sample this page shows (review.py: nested samples)
      lines.push([r.r, r.f, r.d, corrected, audit, r.t, r.s].map(csvField).join(","));
    });
    return lines.join("\n") + "\n";
  }

  function download() {
    saveNow();
    var link = el("a", { download: "decisions.csv" });
    link.href = URL.createObjectURL(new Blob([decisionsCsv()], { type: "text/csv;charset=utf-8" }));
    document.body.appendChild(link);
    link.click();
    setTimeout(function () { URL.revokeObjectURL(link.href); link.remove(); }, 1000);
  }

  function forget() { // browsers keep about 5 MB for all file:// pages: free this run's share
    var n = Object.keys(decisions).length;
    if (!window.confirm("Forget the " + n + " decisions of this run kept in this browser? Download them first.")) return;
    decisions = {};
    try { window.localStorage.removeItem(STORE_KEY); } catch (err) { /* nothing kept */ }
    progress();
    render();
  }

  // ------------------------------------------------------------------ data files (<script>, on demand)
  window.LEMON_CHUNK = function (view, n, cards) {
    var key = view + "/" + n;
    chunks[key] = cards;
    if (waiting[key]) waiting[key].resolve(cards);
  };

  function loadChunk(view, n) {
    var key = view + "/" + n;
    if (chunks[key]) return Promise.resolve(chunks[key]);
    if (waiting[key]) return waiting[key].promise;
    var entry = {};
    entry.promise = new Promise(function (resolve, reject) { entry.resolve = resolve; entry.reject = reject; });
    waiting[key] = entry;
    var script = document.createElement("script");
    script.src = META.sidecar + "/" + view + "/" + String(n).padStart(5, "0") + ".js";
    script.onload = function () {
      script.remove();
      delete waiting[key];
      if (!chunks[key]) entry.reject(new Error(script.src + " holds no cards"));
    };
    script.onerror = function () {
      script.remove();
      delete waiting[key];
      entry.reject(new Error("cannot load " + script.src));
    };
    document.head.appendChild(script);
    return entry.promise;
  }

  function dropChunks(keep) { // bound the memory a long session uses: drop data files no page shows now
    var keys = Object.keys(chunks);
    if (keys.length <= 200) return;
    keys.forEach(function (k) { if (!keep[k]) delete chunks[k]; });
  }

  // ------------------------------------------------------------------ the list: view, filters, pages
  function number(id) {
    var node = $(id);
    return node && node.value !== "" && isFinite(Number(node.value)) ? Number(node.value) : null;
  }

  function applyFilters() {
    var ix = INDEX[state.view];
    var cls = $("f-class") && $("f-class").value !== "" ? Number($("f-class").value) : null;
    var lo = number("f-min"), hi = number("f-max"), dec = $("f-decision").value;
    var list = [];
    for (var i = 0; i < ix.pos.length; i++) {
      if (cls !== null && ix.cls[i] !== cls) continue;
      if (lo !== null && !(ix.score[i] >= lo)) continue;
      if (hi !== null && !(ix.score[i] <= hi)) continue;
      if (dec) {
        var d = decisions[ix.pos[i]];
        if ((d ? d.d : "none") !== dec) continue;
      }
      list.push(i);
    }
    state.list = list;
    state.page = 0;
    state.focus = 0;
    render();
  }

  function pages() { return Math.max(1, Math.ceil(state.list.length / state.size)); }

  function goPage(page, focus) {
    if (page < 0 || page >= pages()) return false;
    state.page = page;
    state.focus = focus || 0;
    state.scroll = true;
    render();
    return true;
  }

  function switchView(view) {
    if (!INDEX[view]) return;
    state.view = view;
    document.querySelectorAll(".tabs button").forEach(function (b) {
      b.setAttribute("aria-selected", String(b.dataset.view === view));
    });
    applyFilters();
  }

  function render() {
    var token = ++state.token;
    state.loading = true; // keys wait for the new cards: they never act on the page being replaced
    var view = state.view, start = state.page * state.size;
    var items = state.list.slice(start, start + state.size);
    var need = {};
    items.forEach(function (i) { need[view + "/" + Math.floor(i / META.chunk)] = true; });
    dropChunks(need);
    $("page-of").textContent = state.list.length
      ? "page " + (state.page + 1) + " of " + pages() + " (pairs " + (start + 1) + "\u2013" +
        (start + items.length) + " of " + state.list.length + ")"
      : "no pair matches the filters";
    $("prev").disabled = state.page === 0;
    $("next").disabled = state.page >= pages() - 1;
    Promise.all(Object.keys(need).map(function (k) {
      return loadChunk(view, Number(k.split("/")[1]));
    })).then(function () {
      if (token !== state.token) return;
      state.loading = false;
      state.cards = items.map(function (i) {
        return chunks[view + "/" + Math.floor(i / META.chunk)][i % META.chunk];
      });
      var box = $("cards");
      box.textContent = "";
      var frag = document.createDocumentFragment();
      state.cards.forEach(function (card, j) { frag.appendChild(cardNode(card, j)); });
      box.appendChild(frag);
      box.dataset.page = view + ":" + state.page;
      box.dataset.renders = String(Number(box.dataset.renders || 0) + 1); // tests wait on it
      if (!box.dataset.firstPageMs) box.dataset.firstPageMs = performance.now().toFixed(1); // benchmarks/
      setFocus(Math.min(state.focus, state.cards.length - 1), state.scroll);
      state.scroll = false;
    }, function (err) {
      status("Cannot load the review data (" + err.message + "): keep the folder " + META.sidecar +
        "/ next to report.html, or write the report again (python -m lemon.report RUN_DIR).");
    });
  }

  // ------------------------------------------------------------------ cards
  function neighbourStrip(title, items, observed, classes) {
    if (!items || !items.length) return null;
    var texts = items.map(function (it) { return it[0]; });
    var head = el("div", { className: "why", text: title });
    if (classes) {
      var counts = {}, best = null;
      texts.forEach(function (t) { counts[t] = (counts[t] || 0) + 1; if (best === null || counts[t] > counts[best]) best = t; });
      var other = texts.filter(function (t) { return t !== observed; }).length;
      head.appendChild(document.createTextNode(": " + other + " of " + texts.length + " carry another label"));
      if (best !== observed && counts[best] > 1) {
        head.appendChild(document.createTextNode("; most say "));
        head.appendChild(el("b", { text: best }));
        head.appendChild(document.createTextNode(" (" + counts[best] + " of " + texts.length + ")"));
      }
    }
    var strip = el("div", { className: "nb" });
    items.forEach(function (it) {
      var cls = classes ? (it[0] === observed ? "agrees" : "differs") : "plain";
      var img = null;
      if (META.has_images) {
        img = it[1] ? el("img", { src: url(it[1]), alt: "", loading: "lazy", decoding: "async" }) : el("span", { className: "mini" });
      }
      strip.appendChild(el("div", { className: META.has_images ? "nbi" : "chip" }, [img, el("span", { className: cls, text: it[0], title: it[0] })]));
    });
    var box = el("div", {}, [head, strip]);
    return box;
  }

  function scoreCell(card) {
    var parts = card.terms, names = Object.keys(parts);
    var total = names.reduce(function (s, t) { return s + Math.max(parts[t], 0); }, 0) || 1;
    var bar = el("div", { className: "bar" });
    var terms = el("div", { className: "terms" });
    names.forEach(function (t, j) {
      bar.appendChild(el("span", { title: t, style: "width:" + (100 * Math.max(parts[t], 0) / total).toFixed(1) + "%;background:" + TERM_COLOURS[t] }));
      if (j) terms.appendChild(document.createTextNode(" + "));
      terms.appendChild(el("span", { style: "color:" + TERM_COLOURS[t], text: TERM_PREFIX[t] + t + " " + num(parts[t]) }));
    });
    Object.keys(card.x).forEach(function (c) {
      terms.appendChild(el("br"));
      terms.appendChild(document.createTextNode(c + " " + num(card.x[c])));
    });
    return el("div", {}, [
      el("div", { className: "score", text: num(card.sc) }),
      card.fl ? el("span", { className: "badge flag", text: "flagged" }) : null,
      names.length ? bar : null,
      terms
    ]);
  }

  function inputOf(card) {
    var node = document.querySelector('.card[data-pos="' + card.p + '"] .corr');
    return node || null;
  }

  function cardNode(card, j) {
    var classes = META.task === "classification";
    var who = el("div", { className: "who" }, [
      card.k ? el("div", { className: "rank", text: "#" + card.k, title: "rank among the flagged pairs" })
        : el("div", { className: "sub", text: "not flagged" }),
      el("div", { text: "row " + (card.r === null ? "-" : card.r) }),
      card.f ? el("div", { className: "file", title: "image as given", text: card.f }) : null,
      el("div", { className: "sub", text: card.s + " #" + card.i }),
      card.a ? el("span", { className: "badge audit", title: "in the random audit sample", text: "audit" }) : null
    ]);
    var image = null;
    if (META.has_images) {
      image = el("div", {}, [card.u
        ? el("img", { className: "thumb", src: url(card.u), alt: card.f || "", loading: "lazy", decoding: "async" })
        : el("div", { className: "noimg", text: "image not found" })]);
    }
    var truth = null;
    if (card.e === 1) truth = el("span", { className: "badge err", text: "known error \u00b7 clean: " + card.c });
    else if (card.e === 0) truth = el("span", { className: "badge ok", text: "clean in the ground truth" });
    var suggestion = card.g !== undefined
      ? el("div", { className: "suggest", text: "suggested: " + card.g + (card.gs !== null && card.gs !== undefined ? " (" + num(card.gs) + ")" : "") })
      : null;
    var text = el("div", {}, [el("div", { className: "obs", text: card.t }), truth, suggestion]);
    var why = el("div", {}, [
      neighbourStrip("Images most like this one are " + (classes ? "labelled" : "captioned"), card.n, card.t, classes),
      neighbourStrip("Pairs whose text reads like this one show", card.m, card.t, false)
    ]);
    if (!card.n && !card.m) why.appendChild(el("div", { className: "why", text: META.neighbours_known ? "no neighbours recorded for this pair" : "neighbours not recorded for this run" }));
    var buttons = el("div", { className: "decide" });
    ["wrong", "right", "unsure"].forEach(function (d) {
      var b = el("button", { type: "button", "data-d": d, "aria-pressed": "false", title: d + " (" + d[0] + ")", text: d });
      b.addEventListener("click", function () {
        setFocus(j, false);
        var rec = decisions[card.p];
        setDecision(card, rec && rec.d === d ? null : d);
      });
      buttons.appendChild(b);
    });
    var rec = decisions[card.p];
    var what = "corrected " + (classes ? "label" : "caption");
    var input = classes  // a class name: a line with the class names to pick from; a caption: a box
      ? el("input", { className: "corr", type: "text", list: "class-names", "aria-label": what, title: what + " (c)" })
      : el("textarea", { className: "corr", rows: "3", "aria-label": what, title: what + " (c)" });
    input.value = rec ? rec.c : card.v;
    input.addEventListener("focus", function () { setFocus(j, false); });
    input.addEventListener("input", function () {
      var r = decisions[card.p];
      if (r) { r.c = input.value; r.t = new Date().toISOString().replace(/\.\d{3}Z$/, "Z"); saveSoon(); }
      else if (input.value.trim() !== card.v.trim()) { record(card, "wrong"); saveSoon(); paint(card); progress(); }
    });
    var review = el("div", {}, [buttons, input, el("div", { className: "when" })]);
    var node = el("article", { className: "card", "data-pos": String(card.p) }, [who, image, text, scoreCell(card), why, review]);
    node.addEventListener("click", function () { if (state.focus !== j) setFocus(j, false); });
    node._card = card;
    paintNode(node, card);
    return node;
  }

  function paintNode(node, card) {
    var rec = decisions[card.p];
    node.classList.remove("d-wrong", "d-right", "d-unsure");
    if (rec) node.classList.add("d-" + rec.d);
    node.dataset.decision = rec ? rec.d : "";
    node.querySelectorAll(".decide button").forEach(function (b) {
      b.setAttribute("aria-pressed", String(!!rec && rec.d === b.dataset.d));
    });
    node.querySelector(".when").textContent = rec ? rec.d + " \u00b7 " + rec.t : "";
  }

  function paint(card) {
    var node = document.querySelector('.card[data-pos="' + card.p + '"]');
    if (node) paintNode(node, card);
  }

  function setFocus(j, scroll) {
    var nodes = $("cards").children;
    if (!nodes.length) return;
    j = Math.max(0, Math.min(j, nodes.length - 1));
    if (nodes[state.focus]) nodes[state.focus].classList.remove("focus");
    state.focus = j;
    nodes[j].classList.add("focus");
    if (scroll) nodes[j].scrollIntoView({ block: "nearest" });
  }

  function move(step) {
    var j = state.focus + step;
    if (j >= state.cards.length) return goPage(state.page + 1, 0);
    if (j < 0) return goPage(state.page - 1, state.size - 1);
    setFocus(j, true);
    return true;
  }

  function progress() {
    var line = [];
    ["flagged", "audit"].forEach(function (view) {
      var done = 0;
      Object.keys(decisions).forEach(function (p) { if (members[view].has(Number(p))) done += 1; });
      line.push(done + " of " + members[view].size + " " + (view === "flagged" ? "flagged" : "audit") + " reviewed");
    });
    $("progress").textContent = line.join(" \u00b7 ");
  }

  // ------------------------------------------------------------------ keys
  function onKey(ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    var target = ev.target;
    if (target && /^(INPUT|SELECT|TEXTAREA)$/.test(target.tagName)) {
      if (target.classList.contains("corr")) {
        var node = target.closest(".card");
        if (ev.key === "Enter") {
          ev.preventDefault();
          setDecision(node._card, "wrong");
          target.blur();
          move(1);
        } else if (ev.key === "Escape") {
          saveNow();
          target.blur();
        }
      }
      return;
    }
    if (state.loading) return;
    var card = state.cards[state.focus];
    var key = ev.key;
    if (DECISIONS[key]) {
      if (!card) return;
      setDecision(card, DECISIONS[key]);
      move(1);
    } else if (key === "x") {
      if (card) setDecision(card, null);
    } else if (key === "j") move(1);
    else if (key === "k") move(-1);
    else if (key === "c") {
      var input = card && inputOf(card);
      if (!input) return;
      input.focus();
      input.select();
    } else if (key === "n" || key === "ArrowRight") goPage(state.page + 1, 0);
    else if (key === "p" || key === "ArrowLeft") goPage(state.page - 1, 0);
    else if (key === "f") switchView("flagged");
    else if (key === "a") switchView("audit");
    else return;
    ev.preventDefault();
  }

  // ------------------------------------------------------------------ start
  function start() {
    if (!INDEX) {
      status("The folder " + META.sidecar + "/ next to this page is missing: the review needs it. Keep it " +
        "beside report.html, or write the report again (python -m lemon.report RUN_DIR).");
      return;
    }
    decisions = loadDecisions();
    if (!META.has_images) $("cards").classList.add("noimages");
    Object.keys(INDEX).forEach(function (view) { members[view] = new Set(INDEX[view].pos); });
    var select = $("f-class");
    if (select) {
      META.classes.forEach(function (name, i) { select.appendChild(el("option", { value: String(i), text: name })); });
    }
    ["f-class", "f-min", "f-max", "f-decision"].forEach(function (id) {
      if ($(id)) $(id).addEventListener("change", applyFilters);
    });
    $("f-size").addEventListener("change", function () {
      var first = state.page * state.size;
      state.size = Number($("f-size").value);
      goPage(Math.floor(first / state.size), 0);
    });
    document.querySelectorAll(".tabs button").forEach(function (b) {
      b.addEventListener("click", function () { switchView(b.dataset.view); });
    });
    $("prev").addEventListener("click", function () { goPage(state.page - 1, 0); });
    $("next").addEventListener("click", function () { goPage(state.page + 1, 0); });
    $("download").addEventListener("click", download);
    $("forget").addEventListener("click", forget);
    document.addEventListener("keydown", onKey);
    window.addEventListener("pagehide", function () { if (saveTimer) saveNow(); });
    state.size = Number($("f-size").value);
    progress();
    switchView(INDEX.flagged.pos.length || !INDEX.audit.pos.length ? "flagged" : "audit");
  }

  start();
})();
