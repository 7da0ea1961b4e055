/* The admin's price preview: the prices a model's or a group's multipliers make, kept
 * up to date as they are typed.
 *
 * The formula is models_catalog/pricing.py's, the rounding models_catalog/display.py's
 * prices_of (to USD_PLACES decimals, half to even) and the text core/money.py's
 * format_usd_exact (display.price_text). Their constants come from the preview's
 * data attributes, rendered by Python: no number of the formula is written here. The
 * arithmetic is exact (BigInt), as Python's Decimal is, so both show the same text.
 */
(function () {
  "use strict";

  // Each multiplier has at most this many decimals (models_catalog.models.RatioField).
  var RATIO_PLACES = 6;
  var FIELDS = ["model_ratio", "completion_ratio", "cached_ratio", "price_per_call", "group_ratio"];

  function pow10(places) {
    return BigInt("1" + "0".repeat(places));
  }

  // A positive decimal as a BigInt of 10^-places units; null when empty, undefined when
  // it is not a number above 0 with at most `places` decimals (the form refuses it).
  function parsePositive(text, places) {
    if (!text || !text.trim()) return null;
    var match = /^\s*(\d*)(?:\.(\d*))?\s*$/.exec(text);
    if (!match || (match[1] === "" && !match[2])) return undefined;
    var fraction = match[2] || "";
    if (fraction.length > places) return undefined;
    var value = BigInt((match[1] || "0") + fraction.padEnd(places, "0"));
    return value > 0n ? value : undefined;
  }

  function isNumber(value) {
    return typeof value === "bigint";
  }

  // `value` of 10^-scale units, rounded half to even to 10^-places units.
  function roundHalfEven(value, scale, places) {
    if (scale <= places) return value * pow10(places - scale);
    var divisor = pow10(scale - places);
    var quotient = value / divisor;
    var twice = (value % divisor) * 2n;
    if (twice > divisor || (twice === divisor && quotient % 2n === 1n)) quotient += 1n;
    return quotient;
  }

  // display.price_text: "$1.25", "$1,200.00": at least 2 decimals, at most `places`, no
  // trailing zeros, thousands separated.
  function usd(value, scale, places) {
    if (value === null) return "\u2014";
    var units = roundHalfEven(value, scale, places);
    var whole = units / pow10(places);
    var fraction = (units % pow10(places)).toString().padStart(places, "0");
    return "$" + whole.toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",") + "." + fraction.replace(/0+$/, "").padEnd(2, "0");
  }

  function numberAttribute(element, name) {
    return parseInt(element.getAttribute(name), 10);
  }

  // What a row's multipliers are: the form's inputs where the form has them, else the row's.
  function multipliers(row) {
    var values = {};
    FIELDS.forEach(function (field) {
      var input = document.getElementById("id_" + field);
      var text = input ? input.value : row.getAttribute("data-" + field.replace(/_/g, "-"));
      // A price per call is whole micro-USD; the others are ratios.
      values[field] = parsePositive(text, field === "price_per_call" ? 0 : RATIO_PLACES);
    });
    return values;
  }

  // pricing.input_usd_per_million and friends, and display.prices_of's choice between
  // per-token and per-call prices. Returns [value, scale] pairs (null: no such price).
  function prices(values, constants) {
    var none = { input: null, output: null, cached: null, "per-call": null };
    if (!isNumber(values.group_ratio) || values.model_ratio === undefined) return none;
    var group = values.group_ratio;
    if (values.model_ratio === null) {
      if (!isNumber(values.price_per_call)) return none;
      // Micro-USD times a ratio, in USD.
      return Object.assign(none, {
        "per-call": [values.price_per_call * group, RATIO_PLACES + constants.microDigits],
      });
    }
    // A model ratio of 1 is this many micro-USD per token, i.e. USD per 1M tokens.
    var input = values.model_ratio * group * constants.perToken;
    var inputScale = 2 * RATIO_PLACES;
    // Without a completion ratio output costs what input costs (display.prices_of).
    var completion = values.completion_ratio === null ? pow10(RATIO_PLACES) : values.completion_ratio;
    var cached = values.cached_ratio;
    return Object.assign(none, {
      input: [input, inputScale],
      output: isNumber(completion) ? [input * completion, inputScale + RATIO_PLACES] : null,
      cached: isNumber(cached) ? [input * cached, inputScale + RATIO_PLACES] : null,
    });
  }

  function refresh(preview, constants) {
    preview.querySelectorAll("tr[data-price-row]").forEach(function (row) {
      var computed = prices(multipliers(row), constants);
      row.querySelectorAll("td[data-price]").forEach(function (cell) {
        var price = computed[cell.getAttribute("data-price")];
        cell.textContent = price ? usd(price[0], price[1], constants.places) : usd(null);
      });
    });
  }

  function start() {
    document.querySelectorAll("[data-comet-price-preview]").forEach(function (preview) {
      var microPerUsd = preview.getAttribute("data-micro-usd-per-usd");
      var constants = {
        perToken: BigInt(numberAttribute(preview, "data-micro-usd-per-token-at-ratio-one")),
        // 1 USD is 10^microDigits micro-USD.
        microDigits: microPerUsd.length - 1,
        places: numberAttribute(preview, "data-usd-places"),
      };
      FIELDS.forEach(function (field) {
        var input = document.getElementById("id_" + field);
        if (input) input.addEventListener("input", function () { refresh(preview, constants); });
      });
      refresh(preview, constants);
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
