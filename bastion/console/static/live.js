// The live sessions page: every two seconds, the table is brought up to
// date from /ui/live.json. Rows are kept by session ID, so that a reason
// being typed in a kill form survives the refresh. Every value is
// inserted as text (textContent), never as markup.
"use strict";
(function () {
  const table = document.getElementById("live");
  if (!table) {
    return;
  }
  const tbody = table.tBodies[0];
  const csrf = document.body.dataset.csrf || "";
  const cells = ["identity", "target", "login", "since", "bytes", "rule", "client", "session"];

  function text(cls, s) {
    const td = document.createElement("td");
    td.className = cls;
    td.textContent = s;
    return td;
  }

  function actions(row) {
    const td = document.createElement("td");
    td.className = "actions";
    if (row.follow_url) {
      const a = document.createElement("a");
      a.className = "follow";
      a.href = row.follow_url;
      a.textContent = "Follow";
      td.appendChild(a);
    }
    if (row.kill_url) {
      const f = document.createElement("form");
      f.className = "kill";
      f.method = "post";
      f.action = row.kill_url;
      const t = document.createElement("input");
      t.type = "hidden";
      t.name = "csrf";
      t.value = csrf;
      const r = document.createElement("input");
      r.type = "text";
      r.name = "reason";
      r.maxLength = 200;
      r.placeholder = "reason";
      r.setAttribute("aria-label", "reason");
      const b = document.createElement("button");
      b.type = "submit";
      b.textContent = "Kill";
      f.append(t, r, b);
      td.appendChild(f);
    }
    return td;
  }

  function values(row) {
    return [row.identity, row.target, row.login, row.started + " (" + row.age + ")",
      row.bytes < 0 ? "—" : String(row.bytes), row.allowed, row.client,
      row.member ? row.id + " (member " + row.member + ")" : row.id];
  }

  function update(data) {
    const byID = new Map();
    for (const tr of Array.from(tbody.rows)) {
      const s = tr.querySelector("td.session");
      if (s) {
        byID.set(s.textContent, tr);
      } else {
        tr.remove();
      }
    }
    let prev = null;
    for (const row of data.rows) {
      let tr = byID.get(row.id);
      const vals = values(row);
      if (tr) {
        byID.delete(row.id);
        cells.forEach(function (cls, i) {
          const td = tr.querySelector("td." + cls);
          if (cls === "since") {
            const t = td.querySelector("time");
            if (t) {
              td.lastChild.textContent = " (" + row.age + ")";
              return;
            }
          }
          if (td.textContent !== vals[i]) {
            td.textContent = vals[i];
          }
        });
      } else {
        tr = document.createElement("tr");
        cells.forEach(function (cls, i) {
          if (cls === "since") {
            const td = document.createElement("td");
            td.className = "since";
            const t = document.createElement("time");
            t.dateTime = row.started;
            t.textContent = row.started;
            td.append(t, document.createTextNode(" (" + row.age + ")"));
            tr.appendChild(td);
            return;
          }
          tr.appendChild(text(cls, vals[i]));
        });
        tr.appendChild(actions(row));
      }
      // Moved only when out of place: moving a row would take the focus
      // from its form.
      if (prev && prev.nextElementSibling !== tr) {
        prev.after(tr);
      } else if (!prev && tbody.firstElementChild !== tr) {
        tbody.prepend(tr);
      }
      prev = tr;
    }
    for (const tr of byID.values()) {
      tr.remove();
    }
    if (data.rows.length === 0) {
      const tr = document.createElement("tr");
      const td = text("", "No live session.");
      td.id = "none";
      td.colSpan = 9;
      tr.appendChild(td);
      tbody.appendChild(tr);
    }
    const asOf = document.getElementById("as-of");
    if (asOf) {
      asOf.textContent = "As of " + data.now + ".";
    }
  }

  function stopped(why) {
    const asOf = document.getElementById("as-of");
    if (asOf) {
      asOf.textContent = "No longer up to date (" + why + "): reload the page.";
    }
  }

  function refresh() {
    fetch("/ui/live.json", {credentials: "same-origin", cache: "no-store"}).then(function (resp) {
      if (!resp.ok) {
        throw new Error("the console answered " + resp.status);
      }
      return resp.json();
    }).then(function (data) {
      update(data);
      setTimeout(refresh, 2000);
    }).catch(function (err) {
      stopped(err.message);
    });
  }
  setTimeout(refresh, 2000);
})();
