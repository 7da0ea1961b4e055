// The light / dark theme chosen on this device, applied before the page paints (no
// flash): loaded in <head> without `defer`, a file because the CSP forbids inline
// scripts. No choice, or "system", leaves <html> without data-theme: Pico then
// follows the system's setting. comet.js wires the header's theme menu.
(function () {
  "use strict";
  var theme = null;
  try {
    theme = window.localStorage.getItem("comet-theme");
  } catch (error) {
    // Storage refused (private mode, blocked cookies): follow the system.
  }
  if (theme === "light" || theme === "dark") {
    document.documentElement.setAttribute("data-theme", theme);
  }
  document.documentElement.classList.add("js");
})();
