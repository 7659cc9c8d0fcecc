// The follow page: the session's output, as the journal recorded it,
// arrives from the stream as Server-Sent Events and is appended to
// <pre id="output"> as text (textContent), never as markup. The server
// has already shown control characters as visible escapes.
"use strict";
(function () {
  const status = document.getElementById("status");
  const output = document.getElementById("output");
  if (!status || !output || !status.dataset.stream) {
    return;
  }
  status.textContent = "Connecting…";
  const es = new EventSource(status.dataset.stream);
  let ended = false;

  function say(s) {
    status.textContent = s;
  }
  function data(ev) {
    try {
      return JSON.parse(ev.data);
    } catch (e) {
      return {};
    }
  }

  es.addEventListener("open", function () {
    say("Following: output appears as it is recorded.");
  });
  es.addEventListener("output", function (ev) {
    const d = data(ev);
    if (typeof d.text === "string") {
      output.appendChild(document.createTextNode(d.text));
      output.scrollTop = output.scrollHeight;
    }
  });
  es.addEventListener("end", function (ev) {
    const d = data(ev);
    ended = true;
    es.close();
    let s = "The session ended (" + (d.reason || "no reason recorded") + ")";
    if (d.by) {
      s += ", killed by " + d.by;
    }
    if (d.detail) {
      s += ": " + d.detail;
    }
    say(s + ".");
    document.body.dataset.ended = "true";
    for (const f of document.querySelectorAll("form.kill")) {
      f.remove();
    }
  });
  es.addEventListener("stop", function (ev) {
    const d = data(ev);
    ended = true;
    es.close();
    say("The stream stopped: " + (d.message || "no reason given") + ". Reload the page to follow again.");
  });
  es.addEventListener("error", function () {
    if (ended) {
      return;
    }
    // No reconnection: each stream is a read of the journal, journaled.
    es.close();
    say("The stream was refused or cut (too many streams open, your console session ended, or the server went away). Reload the page to follow again.");
  });
})();
