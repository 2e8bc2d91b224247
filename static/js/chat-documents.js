// The chat's "Use my documents" box keeps its state after each message is sent (the
// composer is reset then), so a conversation about the documents stays about them.
(function () {
  "use strict";
  document.addEventListener("change", function (event) {
    var box = event.target;
    if (box.name === "use_documents" && box.closest("#composer")) box.defaultChecked = box.checked;
  });
})();
