// vallum's web view: reads /api/*, follows /api/events (server-sent
// events), and, for an admin, posts bans and unbans with the CSRF token.
"use strict";
const $ = s => document.querySelector(s);
const st = {me: null, list: "", offset: 0, total: 0, q: "", size: 50, lists: [], timer: 0, seq: 0};

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

async function get(path) {
  const r = await fetch(path, {cache: "no-store"});
  if (!r.ok) throw new Error(path + ": " + r.status);
  return r.json();
}

async function post(path, body) {
  const r = await fetch(path, {method: "POST", body: JSON.stringify(body),
    headers: {"Content-Type": "application/json", "X-Vallum-Token": st.me.token}});
  const j = await r.json().catch(() => ({error: String(r.status)}));
  if (!r.ok) throw new Error(j.error || r.status);
  return j;
}

function ago(sec) {
  const d = Math.max(0, Math.round(Date.now() / 1000 - sec));
  return dur(d) + " ago";
}

function dur(d) {
  if (d < 60) return d + "s";
  if (d < 3600) return Math.floor(d / 60) + "m";
  if (d < 86400) return Math.floor(d / 3600) + "h" + String(Math.floor(d % 3600 / 60)).padStart(2, "0");
  return Math.floor(d / 86400) + "d" + Math.floor(d % 86400 / 3600) + "h";
}

function left(exp) {
  if (!exp) return "permanent";
  const d = exp - Math.floor(Date.now() / 1000);
  return d > 0 ? dur(d) : "expired";
}

function chart(perHour) {
  const ns = "http://www.w3.org/2000/svg", w = 240, h = 48;
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const top = Math.max(1, ...perHour), bw = w / perHour.length;
  perHour.forEach((n, i) => {
    const r = document.createElementNS(ns, "rect"), bh = n ? Math.max(1, n / top * (h - 2)) : 0;
    r.setAttribute("x", i * bw + 1); r.setAttribute("width", bw - 2);
    r.setAttribute("y", h - bh); r.setAttribute("height", bh);
    const t = document.createElementNS(ns, "title");
    t.textContent = `${n} bans, ${23 - i}h ago`;
    r.append(t); svg.append(r);
  });
  return svg;
}

function topList(title, counts) {
  const d = el("div"), ul = el("ul");
  d.append(el("div", title));
  for (const c of counts) {
    const li = el("li");
    li.append(el("span", c.name || "(none)"), el("span", c.count.toLocaleString("en")));
    ul.append(li);
  }
  d.append(ul);
  return d;
}

async function loadLists() {
  st.lists = await get("/api/lists");
  const box = $("#lists");
  box.replaceChildren();
  for (const l of st.lists) {
    const c = el("div", undefined, "card"), h = el("h3");
    h.append(el("span", l.root), el("span", l.count.toLocaleString("en"), "n"));
    const sum = l.per_hour.reduce((a, b) => a + b, 0);
    const top = el("div", undefined, "top");
    top.append(topList("reasons", l.reasons), topList("origins", l.origins));
    c.dataset.list = l.root;
    c.append(h, chart(l.per_hour), el("small", sum.toLocaleString("en") + " bans in the last 24 h"), top);
    box.append(c);
  }
  const sel = $("#list");
  if (sel.options.length !== st.lists.length) {
    sel.replaceChildren(...st.lists.map(l => el("option", l.root)));
    if (!st.list && st.lists.length) { st.list = st.lists[0].root; loadBans(); }
  }
}

async function loadHosts() {
  const hosts = await get("/api/hosts"), tb = $("#hosts tbody");
  tb.replaceChildren();
  let on = 0;
  for (const h of hosts) {
    const tr = el("tr");
    if (h.online) on++;
    const ent = Object.entries(h.entries || {}).map(([k, v]) => `${k}: ${v}`).join(", ");
    tr.append(el("td", h.id), el("td", h.online ? "online" : "offline", h.online ? "on" : "offl"),
      el("td", ago(h.seen)), el("td", h.synced ? "yes" : "no", h.synced ? "on" : "offl"),
      el("td", ent), el("td", h.version || ""), el("td", h.backend || ""));
    tr.dataset.host = h.id;
    tb.append(tr);
  }
  $("#hosts-sum").textContent = `${on} of ${hosts.length} online`;
}

async function loadBans() {
  if (!st.list) return;
  const u = `/api/bans?list=${encodeURIComponent(st.list)}&q=${encodeURIComponent(st.q)}&offset=${st.offset}&limit=${st.size}`;
  const seq = ++st.seq, pg = await get(u), tb = $("#bans tbody");
  if (seq !== st.seq) return; // a newer request is on its way
  st.total = pg.total;
  tb.replaceChildren();
  for (const b of pg.bans) {
    const tr = el("tr");
    tr.dataset.prefix = b.prefix;
    tr.append(el("td", b.prefix, "addr"), el("td", b.reason || ""), el("td", b.origin || ""),
      el("td", ago(b.at / 1000)), el("td", left(b.expires)), el("td", b.count > 1 ? "×" + b.count : ""));
    if (st.me.admin) {
      const td = el("td"), btn = el("button", "unban");
      btn.className = "unban";
      btn.onclick = () => act("/api/unban", {list: st.list, prefix: b.prefix});
      td.append(btn); tr.append(td);
    }
    tb.append(tr);
  }
  const from = pg.total ? st.offset + 1 : 0, to = st.offset + pg.bans.length;
  $("#range").textContent = `${from.toLocaleString("en")}–${to.toLocaleString("en")} of ${pg.total.toLocaleString("en")}`;
  $("#first").disabled = $("#prev").disabled = st.offset === 0;
  $("#next").disabled = $("#last").disabled = to >= pg.total;
}

function page(offset) {
  st.offset = Math.max(0, offset);
  loadBans().catch(show);
}

async function act(path, body) {
  $("#act-msg").textContent = "…";
  try {
    const r = await post(path, body);
    $("#act-msg").textContent = path.slice(5) + ": " + r.ok;
  } catch (e) {
    $("#act-msg").textContent = e.message;
  }
}

function show(e) { $("#act-msg").textContent = String(e.message || e); }

function event(e) {
  const li = el("li", undefined, e.kind), t = new Date().toLocaleTimeString();
  if (e.kind === "host") return loadHosts().catch(show);
  li.append(t + " ", el("b", e.kind), " ");
  if (e.kind === "refused") {
    li.append(`${e.reason}: ${e.msg}` + (e.user ? ` (user ${e.user})` : "") + (e.topic ? ` ${e.topic}` : ""));
  } else if (e.count) { // a summary: a burst or a cut
    li.append(`${e.msg} on ${e.list}`);
  } else {
    li.append(el("span", e.prefix, "addr"), ` on ${e.list}` + (e.reason ? ` (${e.reason})` : "") + (e.origin ? ` from ${e.origin}` : ""));
  }
  const ol = $("#events");
  ol.prepend(li);
  while (ol.children.length > 200) ol.lastChild.remove();
  // The lists' counts and the first page follow the stream, at most 4 times a second.
  if (!st.timer) st.timer = setTimeout(() => {
    st.timer = 0;
    loadLists().catch(show);
    if (st.offset === 0) loadBans().catch(show);
  }, 250);
}

function stream() {
  const es = new EventSource("/api/events");
  es.onopen = () => $("#live").className = "";
  es.onerror = () => $("#live").className = "off";
  es.onmessage = m => event(JSON.parse(m.data));
}

async function main() {
  st.me = await get("/api/me");
  st.size = st.me.page_size;
  $("#who").textContent = `${st.me.user} (${st.me.admin ? "admin" : "read only"})`;
  if (st.me.admin) document.querySelectorAll(".admin").forEach(e => e.hidden = false);
  $("#allow-btn").hidden = !(st.me.admin && st.me.allow);
  $("#act").onsubmit = ev => {
    ev.preventDefault();
    act("/api/ban", {list: st.list, prefix: $("#ban-prefix").value, timeout: $("#ban-timeout").value, reason: $("#ban-reason").value});
  };
  $("#allow-btn").onclick = () => act("/api/allow", {prefix: $("#ban-prefix").value, reason: $("#ban-reason").value});
  $("#list").onchange = e => { st.list = e.target.value; page(0); };
  let typing = 0;
  $("#q").oninput = e => { clearTimeout(typing); typing = setTimeout(() => { st.q = e.target.value.trim(); page(0); }, 200); };
  $("#first").onclick = () => page(0);
  $("#prev").onclick = () => page(st.offset - st.size);
  $("#next").onclick = () => page(st.offset + st.size);
  $("#last").onclick = () => page(Math.floor(Math.max(0, st.total - 1) / st.size) * st.size);
  stream();
  await Promise.all([loadLists(), loadHosts()]);
  setInterval(() => { loadHosts().catch(show); loadLists().catch(show); }, 10000);
}

main().catch(show);
