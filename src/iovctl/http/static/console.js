// The console's own behaviour, beside htmx (no inline scripts: the CSP forbids them).
(function () {
  "use strict";

  function setLive(state, text) {
    var el = document.getElementById("live-state");
    if (el) {
      el.dataset.state = state;
      el.textContent = text;
    }
  }

  document.addEventListener("htmx:sseOpen", function () { setLive("open", "live"); });
  document.addEventListener("htmx:sseError", function () { setLive("lost", "reconnecting"); });

  // A live fragment does not refresh while someone types in one of its fields (a
  // weight half typed would be replaced); it catches up on the next change.
  document.addEventListener("htmx:beforeRequest", function (evt) {
    var elt = evt.detail.elt;
    var focused = document.activeElement;
    if (elt.classList && elt.classList.contains("live") && focused &&
        elt.contains(focused) && focused.matches("input, select, textarea")) {
      evt.preventDefault();
    }
  });

  // Two clicks on Start must not send two requests; a submitted field is done with
  // (it leaves focus, so the refresh that follows the change is not held back).
  document.addEventListener("htmx:beforeRequest", function (evt) {
    var form = evt.detail.elt;
    if (form.tagName === "FORM") {
      form.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
      if (form.contains(document.activeElement)) {
        document.activeElement.blur();
      }
    }
  });
  document.addEventListener("htmx:afterRequest", function (evt) {
    var form = evt.detail.elt;
    if (form.tagName === "FORM") {
      form.querySelectorAll("button").forEach(function (b) { b.disabled = false; });
    }
  });
})();
