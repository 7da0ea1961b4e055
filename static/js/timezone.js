// Send the browser's time zone once, for a signed-in user who has none saved: base.html
// loads this file only then (README, "Time zones"). A file, not an inline script: the CSP
// forbids those. The server keeps a zone already saved and answers 400 to an unknown one;
// either way this tab does not ask again.
(function () {
  "use strict";
  var script = document.currentScript;
  var url = script && script.getAttribute("data-time-zone-url");
  if (!url || !window.fetch || !window.Intl) return;
  var sent = "comet-time-zone-sent";
  try { if (window.sessionStorage.getItem(sent)) return; } catch (error) { /* storage off */ }
  var zone;
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (error) { return; }
  if (!zone || zone.length > 64) return;
  var csrf = "";
  try { csrf = JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"] || ""; } catch (error) { csrf = ""; }
  var body = new URLSearchParams();
  body.set("time_zone", zone);
  fetch(url, {
    method: "POST",
    body: body,
    credentials: "same-origin",
    headers: { "X-CSRFToken": csrf },
  }).then(function () {
    try { window.sessionStorage.setItem(sent, "1"); } catch (error) { /* storage off */ }
  }).catch(function () { /* offline: try again on the next page */ });
})();
