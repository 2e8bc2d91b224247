// The pricing page filters as you type, in the page: every row carries its search text
// (data-search), so no keystroke waits for the server. Without this script the form's
// htmx search (or a plain GET) filters on the server; sorting stays on the server here.
(function () {
  "use strict";

  var form = document.querySelector("form[data-instant-filter]");
  if (!form) return;
  var input = form.querySelector("input[name=q]");

  function table() { return document.getElementById("pricing-table"); }

  function apply() {
    var terms = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    var rows = table().querySelectorAll("tbody tr[data-search]");
    var shown = 0;
    rows.forEach(function (row) {
      var text = row.dataset.search;
      var match = terms.every(function (term) { return text.indexOf(term) !== -1; });
      row.hidden = !match;
      if (match) shown += 1;
    });
    var query = input.value.trim();
    document.getElementById("pricing-count").textContent =
      shown + " model" + (shown === 1 ? "" : "s") + (query ? " matching “" + query + "”" : "") + ".";
    document.getElementById("pricing-empty").hidden = shown > 0;
    var url = new URL(window.location.href);
    if (query) url.searchParams.set("q", query); else url.searchParams.delete("q");
    window.history.replaceState(null, "", url);
  }

  // Before htmx reads the form (this deferred script runs first): typing no longer asks
  // the server, only sorting and the Search button do.
  form.setAttribute("hx-trigger", "change from:select, submit");

  // Typing filters here; a page the server filtered (?q=…) is first reloaded whole.
  input.addEventListener("input", function () {
    if (table().dataset.query) {
      var url = new URL(form.action, window.location.href);
      new FormData(form).forEach(function (value, name) {
        if (name !== "q") url.searchParams.set(name, value);
      });
      window.htmx.ajax("GET", url.pathname + url.search, { target: "#pricing-table", swap: "outerHTML" });
      return;
    }
    apply();
  });

  // Sorting asks the server for every row, then the filter applies to the new table.
  document.body.addEventListener("htmx:configRequest", function (event) {
    if (event.detail.elt === form || form.contains(event.detail.elt)) delete event.detail.parameters.q;
  });
  document.body.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target.id === "pricing-table" || (event.target && event.target.id === "pricing-table")) apply();
  });
})();
