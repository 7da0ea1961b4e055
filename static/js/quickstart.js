// Tabs of the quickstart snippets (templates/console/_quickstart.html). No inline
// scripts: the CSP forbids them. Copy buttons are handled in comet.js.
(function () {
  "use strict";

  function select(tab) {
    var list = tab.closest('[role="tablist"]');
    if (!list) return;
    list.querySelectorAll('[role="tab"]').forEach(function (other) {
      var selected = other === tab;
      other.setAttribute("aria-selected", selected ? "true" : "false");
      other.tabIndex = selected ? 0 : -1;
      other.classList.toggle("outline", !selected);
      var panel = document.getElementById(other.getAttribute("aria-controls"));
      if (panel) panel.hidden = !selected;
    });
  }

  document.addEventListener("click", function (event) {
    var tab = event.target.closest('[role="tab"][aria-controls]');
    if (tab) select(tab);
  });

  // Left / right arrows move between the tabs of one list.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "ArrowLeft" && event.key !== "ArrowRight") return;
    var tab = event.target.closest('[role="tab"][aria-controls]');
    if (!tab) return;
    var tabs = Array.prototype.slice.call(
      tab.closest('[role="tablist"]').querySelectorAll('[role="tab"]')
    );
    var step = event.key === "ArrowRight" ? 1 : -1;
    var next = tabs[(tabs.indexOf(tab) + step + tabs.length) % tabs.length];
    select(next);
    next.focus();
    event.preventDefault();
  });
})();
