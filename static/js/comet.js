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

  // <button data-copy-target="#id" [data-copied-label="Copied"]> copies the text of the
  // element it names; if the browser refuses, the text is selected to copy by hand.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy-target]");
    if (!button) return;
    var source = document.querySelector(button.getAttribute("data-copy-target"));
    if (!source) return;
    var text = source.value !== undefined ? source.value : source.textContent;
    copyText(text.trim(), button).then(function () {
      if (button.dataset.copyLabel === undefined) button.dataset.copyLabel = button.textContent;
      button.textContent = button.getAttribute("data-copied-label") || "Copied";
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

  // <form data-confirm="..."> asks before submitting.
  document.addEventListener("submit", function (event) {
    var message = event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) event.preventDefault();
  });
})();
