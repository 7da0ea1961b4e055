// The recharge page: Pay is enabled only for an amount the server would take, and
// only when card payments are set up; the discount the quote applies is marked in the
// list of discounts (the quote's data-applied names its data-tier).
(function () {
  "use strict";

  // The amount field's rule (billing/forms.py): plain digits, an optional "$" and
  // thousands commas, whole cents, between the minimum and the maximum.
  var NUMBER = /^[+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)$/;

  function cents(text) {
    text = text.trim().replace(/^\$+/, "").replace(/,/g, "");
    if (!NUMBER.test(text)) return null;
    text = text.replace(/^\+/, "");
    var parts = text.split(".");
    var whole = parts[0].replace(/^0+/, "");
    var fraction = (parts[1] || "").replace(/0+$/, "");
    if (fraction.length > 2) return null;
    if (whole.length > 12) return Infinity;
    return Number(whole || "0") * 100 + Number((fraction + "00").slice(0, 2));
  }

  function amountValid(form, input) {
    var value = cents(input.value);
    var min = cents(form.getAttribute("data-min") || "0");
    var max = cents(form.getAttribute("data-max") || "0");
    return value !== null && value > 0 && value >= min && value <= max;
  }

  function update(form, afterQuote) {
    var input = form.querySelector("#recharge-amount");
    var pay = form.querySelector("#recharge-pay");
    if (!input || !pay) return;
    var valid = amountValid(form, input);
    // Once the server's quote is in, its verdict counts too.
    if (afterQuote && form.querySelector("#amount-error")) valid = false;
    if (!valid) input.setAttribute("aria-invalid", "true");
    else if (afterQuote) input.removeAttribute("aria-invalid");
    pay.disabled = !(valid && form.getAttribute("data-payments") === "on");
  }

  function markApplied() {
    var quote = document.getElementById("quote");
    var applied = quote ? quote.getAttribute("data-applied") : "";
    document.querySelectorAll(".recharge-tier").forEach(function (tier) {
      var isApplied = tier.getAttribute("data-tier") === applied;
      tier.classList.toggle("is-applied", isApplied);
      if (isApplied) tier.setAttribute("aria-current", "true");
      else tier.removeAttribute("aria-current");
    });
  }

  document.addEventListener("input", function (event) {
    if (event.target.id !== "recharge-amount") return;
    var form = event.target.closest("#recharge-form");
    if (form) update(form, false);
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.target.id !== "recharge-quote") return;
    var form = event.target.closest("#recharge-form");
    if (form) update(form, true);
    markApplied();
  });

  // Enter in the amount field does not send an amount the server would refuse.
  document.addEventListener("submit", function (event) {
    if (event.target.id !== "recharge-form") return;
    var pay = event.target.querySelector("#recharge-pay");
    if (pay && pay.disabled) event.preventDefault();
  });

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("recharge-form");
    if (form) update(form, true);
    markApplied();
  });
})();
