/* ops.js: the Ops browser tracker. Cookieless: no cookie, no storage; the
   server derives the visitor. Usage:
   <script defer src="https://ops.example/ops.js" data-key="WRITE_KEY"
           data-api="https://ops.example" data-dnt="true"></script> */
(function (w, d, n) {
  var s = d.currentScript, api = s.getAttribute("data-api") || new URL(s.src).origin,
    key = s.getAttribute("data-key"), uid = null, last = null, q = [], t = null;
  if (s.getAttribute("data-dnt") === "true" && (n.doNotTrack === "1" || n.globalPrivacyControl)) {
    w.ops = { track: function () {}, identify: function () {}, page: function () {} };
    return;
  }
  function id() {
    return (crypto.randomUUID && crypto.randomUUID()) || Date.now() + "-" + Math.random().toString(36).slice(2);
  }
  function ctx() {
    var l = w.location, p = new URLSearchParams(l.search), c = {}, k = {}, m = {
      utm_campaign: "name", utm_source: "source", utm_medium: "medium", utm_term: "term", utm_content: "content", utm_id: "id" };
    p.forEach(function (v, x) {
      if (m[x]) c[m[x]] = v;
      else if (/^(gclid|fbclid|msclkid|ttclid|li_fat_id|twclid)$/.test(x)) k[x] = v;
    });
    return { page: { url: l.href, path: l.pathname, search: l.search, title: d.title, referrer: d.referrer },
      campaign: c, click_ids: k, screen: { width: screen.width, height: screen.height },
      locale: n.language, library: { name: "ops.js", version: "1" } };
  }
  function send() {
    t = null;
    if (!q.length) return;
    var body = JSON.stringify({ batch: q, sentAt: new Date().toISOString() }), u = api + "/beacon/v1/batch?writeKey=" + encodeURIComponent(key);
    q = [];
    if (!(n.sendBeacon && n.sendBeacon(u, body)))
      fetch(u, { method: "POST", body: body, keepalive: true, headers: { "Content-Type": "text/plain" } });
  }
  function add(m) {
    m.messageId = id();
    m.originalTimestamp = new Date().toISOString();
    m.context = ctx();
    if (uid) m.userId = uid;
    q.push(m);
    if (!t) t = setTimeout(send, 50);
  }
  function page() {
    var p = w.location.pathname + w.location.search;
    if (p === last) return;
    last = p;
    add({ type: "page", name: d.title, properties: { path: w.location.pathname, url: w.location.href, title: d.title, referrer: d.referrer } });
  }
  ["pushState", "replaceState"].forEach(function (f) {
    var o = history[f];
    history[f] = function () { var r = o.apply(this, arguments); page(); return r; };
  });
  w.addEventListener("popstate", page);
  d.addEventListener("click", function (e) {
    var a = e.target.closest && e.target.closest("a[href]");
    if (a && a.host && a.host !== w.location.host) {
      add({ type: "track", event: "Outbound Link Clicked", properties: { href: a.href, text: (a.textContent || "").trim().slice(0, 100) } });
      send();
    }
  }, true);
  w.addEventListener("pagehide", send);
  w.ops = {
    track: function (e, p) { add({ type: "track", event: e, properties: p || {} }); },
    identify: function (u, tr) { uid = String(u); add({ type: "identify", traits: tr || {} }); },
    page: page
  };
  page();
})(window, document, navigator);
