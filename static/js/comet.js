// Behaviour shared by console pages. No inline scripts: the CSP forbids them.
(function () {
  "use strict";

  // Copy `text`: the Clipboard API where the page is a secure context (https, localhost),
  // else a hidden text area and the copy command (a plain-http server on another host).
  function copyText(text, near) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    return new Promise(function (resolve, reject) {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.className = "copy-buffer";
      // Beside the button: outside an open modal dialog nothing can be selected.
      near.parentNode.appendChild(area);
      area.select();
      var copied = false;
      try { copied = document.execCommand("copy"); } catch (error) { copied = false; }
      area.remove();
      if (copied) { resolve(); } else { reject(new Error("copy refused")); }
    });
  }

  // <button data-copy-target="#id" [data-copied-label="..."]> copies the text of the
  // element it names; if the browser refuses, the text is selected to copy by hand.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy-target]");
    if (!button) return;
    var source = document.querySelector(button.getAttribute("data-copy-target"));
    if (!source) return;
    var text = source.value !== undefined ? source.value : source.textContent;
    copyText(text.trim(), button).then(function () {
      if (button.dataset.copyLabel === undefined) button.dataset.copyLabel = button.textContent;
      button.textContent = button.getAttribute("data-copied-label") || document.body.dataset.copiedLabel;
      button.setAttribute("data-copied", "");
      setTimeout(function () {
        button.textContent = button.dataset.copyLabel;
        button.removeAttribute("data-copied");
      }, 1500);
    }).catch(function () {
      if (source.select) { source.select(); return; }
      var range = document.createRange();
      range.selectNodeContents(source);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
    });
  });

  // <dialog data-open-on-load> opens itself when the page (or fragment) arrives.
  function openDialogs(root) {
    root.querySelectorAll("dialog[data-open-on-load]").forEach(function (dialog) {
      if (!dialog.open) dialog.showModal();
    });
  }
  document.addEventListener("DOMContentLoaded", function () { openDialogs(document); });
  document.addEventListener("htmx:afterSwap", function (event) { openDialogs(event.target); });

  // <button data-close-dialog> closes the dialog it sits in.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-close-dialog]");
    if (button) button.closest("dialog").close();
  });

  // <button data-set-value="#input" data-value="25"> fills the input and lets htmx see it.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-set-value]");
    if (!button) return;
    var input = document.querySelector(button.getAttribute("data-set-value"));
    if (!input) return;
    input.value = button.getAttribute("data-value");
    input.dispatchEvent(new Event("input", { bubbles: true }));
    input.focus();
  });

  // A 400 answer to a filter form is a page of messages: show it where results go.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.target;
    if (event.detail.xhr.status === 400 && target && target.hasAttribute("data-swap-on-400")) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });

  // <select data-theme-choice>: light, dark or system, remembered on this device
  // (static/js/theme.js applies it on every page before it paints).
  function storedTheme() {
    try { return window.localStorage.getItem("comet-theme") || "system"; } catch (error) { return "system"; }
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-theme-choice]").forEach(function (select) { select.value = storedTheme(); });
  });
  document.addEventListener("change", function (event) {
    var select = event.target.closest("[data-theme-choice]");
    if (!select) return;
    var theme = select.value;
    try {
      if (theme === "system") window.localStorage.removeItem("comet-theme");
      else window.localStorage.setItem("comet-theme", theme);
    } catch (error) {
      // Not remembered, but still applied to this page.
    }
    if (theme === "light" || theme === "dark") document.documentElement.setAttribute("data-theme", theme);
    else document.documentElement.removeAttribute("data-theme");
    document.dispatchEvent(new CustomEvent("comet:theme-change"));
  });

  // <button data-disclosure aria-controls="id" aria-expanded="false"> shows or hides
  // the element it names, e.g. a log row's cost breakdown in the full-width row below.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-disclosure]");
    if (!button) return;
    var target = document.getElementById(button.getAttribute("aria-controls"));
    if (!target) return;
    var open = button.getAttribute("aria-expanded") !== "true";
    button.setAttribute("aria-expanded", open ? "true" : "false");
    target.hidden = !open;
  });

  // <form data-confirm="..."> asks before submitting.
  document.addEventListener("submit", function (event) {
    var message = event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) event.preventDefault();
  });

  // The header's "Menu" on narrow screens: opens and closes the links; Escape or a
  // click elsewhere closes them.
  document.addEventListener("click", function (event) {
    var header = document.querySelector(".site-header");
    var toggle = header && header.querySelector("[data-nav-toggle]");
    if (!toggle) return;
    var open = header.hasAttribute("data-nav-open");
    if (event.target.closest("[data-nav-toggle]")) {
      open = !open;
    } else if (open && !event.target.closest("#nav-links")) {
      open = false;
    } else {
      return;
    }
    header.toggleAttribute("data-nav-open", open);
    toggle.setAttribute("aria-expanded", open ? "true" : "false");
  });
  document.addEventListener("keydown", function (event) {
    var header = document.querySelector(".site-header[data-nav-open]");
    if (event.key !== "Escape" || !header) return;
    header.removeAttribute("data-nav-open");
    var toggle = header.querySelector("[data-nav-toggle]");
    toggle.setAttribute("aria-expanded", "false");
    toggle.focus();
  });
})();
