// The grants inbox refreshes itself from /ui/grants.json every two
// seconds. Every value is set with textContent or as an attribute through
// the DOM, never parsed as HTML. While the person is typing a comment,
// the table of pending requests is left as it is.
"use strict";
(function () {
  var pending = document.querySelector("#pending tbody");
  var decided = document.querySelector("#decided tbody");
  if (!pending || !decided) {
    return;
  }
  var csrf = document.body.getAttribute("data-csrf") || "";
  var last = "";

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function add(parent) {
    for (var i = 1; i < arguments.length; i++) {
      var c = arguments[i];
      parent.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return parent;
  }
  function requester(g) {
    var td = add(el("td", "requester"), el("span", "identity", g.identity));
    if (g.sponsor) add(td, el("br"), "sponsor: ", el("span", "sponsor", g.sponsor));
    return td;
  }
  function allows(g, long) {
    var td = add(el("td", "allows"), "target ", el("span", "target", g.target), ", login ", el("span", "login", g.login));
    if (g.command) add(td, long ? ", only the command " : ", only ", el("code", "command", g.command));
    add(td, ", for ", el("span", "duration", g.duration));
    if (long && g.asked !== g.duration) add(td, " (asked " + g.asked + ")");
    add(td, ", role ", el("span", "role", g.role));
    if (g.window) add(td, el("br"), g.window);
    return td;
  }
  function time(t) {
    var e = el("time", "", t);
    e.setAttribute("datetime", t);
    return e;
  }
  function approvals(g) {
    return g.approvals.length ? g.approvals.join("; ") : "none";
  }
  // commentForm is a form that posts a comment on grant g to each of
  // actions (the first the form's own, the others by their buttons'
  // formaction), with the anti-forgery token.
  function commentForm(g, max, label, actions) {
    var base = "/ui/grants/" + encodeURIComponent(g.id) + "/";
    var f = el("form");
    f.method = "post";
    f.action = base + actions[0];
    var t = el("input");
    t.type = "hidden"; t.name = "csrf"; t.value = csrf;
    var c = el("input");
    c.type = "text"; c.name = "comment"; c.maxLength = max; c.placeholder = "comment";
    c.setAttribute("aria-label", label + g.id);
    add(f, t, c);
    actions.forEach(function (action, i) {
      var b = el("button", action, action.charAt(0).toUpperCase() + action.slice(1));
      b.type = "submit";
      if (i > 0) b.setAttribute("formaction", base + action);
      add(f, " ", b);
    });
    return f;
  }
  function form(g, max) {
    return commentForm(g, max, "comment on ", ["approve", "deny"]);
  }
  function revokeForm(g, max) {
    return commentForm(g, max, "comment on revoking ", ["revoke"]);
  }
  function none(span, text) {
    var td = el("td", "none", text);
    td.colSpan = span;
    return add(el("tr"), td);
  }
  function pendingRow(g, d) {
    var tr = el("tr");
    tr.setAttribute("data-grant", g.id);
    add(tr, el("td", "grant", g.id), requester(g), el("td", "reason", g.reason), el("td", "ticket", g.ticket || ""),
      add(el("td", "requested"), time(g.requested), el("br"), "expires unless decided by " + g.pending_until),
      allows(g, true),
      add(el("td", "approval"), el("span", "rule", g.rule), "; so far: ", el("span", "approvals", approvals(g))));
    if (d.approver) {
      var td = el("td", "decide");
      if (g.decide) td.appendChild(form(g, d.max_comment));
      else if (g.own) td.textContent = "your own request: another approver decides it";
      tr.appendChild(td);
    }
    return tr;
  }
  function decidedRow(g, d) {
    var tr = el("tr");
    tr.setAttribute("data-grant", g.id);
    add(tr, el("td", "grant", g.id), el("td", "state", g.state), requester(g), el("td", "reason", g.reason),
      el("td", "ticket", g.ticket || ""), allows(g, false), add(el("td", "decided"), time(g.decided)),
      el("td", "by", g.decided_by || ""), el("td", "comment", g.comment || ""), el("td", "approvals", approvals(g)));
    if (d.revoker) {
      var td = el("td", "end");
      if (g.revoke) td.appendChild(revokeForm(g, d.max_comment));
      tr.appendChild(td);
    }
    return tr;
  }
  function decidedRows(d) {
    var cols = d.revoker ? 11 : 10;
    return d.decided.length ? d.decided.map(function (g) { return decidedRow(g, d); }) : [none(cols, "None.")];
  }
  function replace(tbody, rows) {
    while (tbody.firstChild) tbody.removeChild(tbody.firstChild);
    rows.forEach(function (r) { tbody.appendChild(r); });
  }
  function refresh() {
    fetch("/ui/grants.json", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (text) {
        var d = JSON.parse(text);
        var now = document.getElementById("now");
        if (now) now.textContent = d.now;
        if (pending.contains(document.activeElement) || decided.contains(document.activeElement)) {
          // A comment is being typed: the tables wait, and are rebuilt
          // at the first refresh after.
          last = "";
          return;
        }
        var key = JSON.stringify([d.pending, d.decided]);
        if (key === last) return;
        last = key;
        replace(pending, d.pending.length ? d.pending.map(function (g) { return pendingRow(g, d); }) : [none(8, "No pending request.")]);
        replace(decided, decidedRows(d));
      })
      .catch(function () { /* signed out or offline: the page stays as it is */ });
  }
  setInterval(refresh, 2000);
})();
