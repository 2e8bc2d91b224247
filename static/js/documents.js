// The Documents page: an upload's progress while the file is sent, then while it is read.
(function () {
  "use strict";

  function parts(form) {
    return {
      bar: form.querySelector(".upload-progress"),
      phase: form.querySelector("#upload-phase"),
    };
  }

  document.addEventListener("htmx:beforeRequest", function (event) {
    var form = event.target.closest(".upload-form");
    if (!form) return;
    var p = parts(form);
    p.bar.hidden = false;
    p.bar.value = 0;
    p.phase.textContent = "Uploading…";
  });

  document.addEventListener("htmx:xhr:progress", function (event) {
    var form = event.target.closest(".upload-form");
    if (!form || !event.detail.lengthComputable) return;
    var p = parts(form);
    p.bar.value = Math.round((event.detail.loaded / event.detail.total) * 100);
    if (event.detail.loaded >= event.detail.total) {
      // The bytes are there; the server now reads the text and indexes the passages.
      p.bar.removeAttribute("value");
      p.phase.textContent = "Reading and indexing…";
    }
  });

  // A refused upload comes back as a 4xx with the library (and the reason) to show.
  document.addEventListener("htmx:beforeSwap", function (event) {
    if (event.detail.xhr.status >= 400 && event.detail.xhr.status < 500 &&
        event.target.id === "library") {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.target.id !== "library" && !(event.detail.elt && event.detail.elt.id === "library")) return;
    var error = document.getElementById("upload-error");
    var input = document.getElementById("doc-file");
    if (error && input) input.focus();
  });
})();
