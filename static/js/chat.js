// The chat page: Enter sends, the form clears once sent, Send/Stop follow the server's
// "generating" status, and the page keeps the newest text in view while it streams.
(function () {
  "use strict";

  function setUp() {
    var chat = document.querySelector("[data-chat]");
    if (!chat) return;
    var form = chat.querySelector("#composer");
    var textarea = form.querySelector("textarea");
    var send = chat.querySelector("#chat-send");
    var stop = chat.querySelector("#chat-stop");
    var log = chat.querySelector("#messages");
    var stick = true;

    function status() { return chat.querySelector("#chat-status"); }
    function generating() { return !!status().querySelector("[data-generating]"); }
    function nearBottom() {
      return window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 120;
    }
    function toBottom() { window.scrollTo(0, document.documentElement.scrollHeight); }
    function sync() {
      var busy = generating();
      log.setAttribute("aria-busy", busy ? "true" : "false");
      send.hidden = busy;
      stop.hidden = !busy;
      if (!busy && document.activeElement === document.body) textarea.focus();
    }

    textarea.addEventListener("keydown", function (event) {
      if (event.key !== "Enter" || event.shiftKey || event.isComposing) return;
      event.preventDefault();
      if (!generating()) form.requestSubmit();
    });
    form.addEventListener("htmx:wsConfigSend", function (event) {
      if (event.target === form && generating()) event.preventDefault();
    });
    form.addEventListener("htmx:wsAfterSend", function (event) {
      if (event.target !== form) return;
      form.reset();
      textarea.focus();
      stick = true;
    });
    stop.addEventListener("click", function () { textarea.focus(); });
    chat.addEventListener("htmx:wsBeforeMessage", function () { stick = stick || nearBottom(); });
    chat.addEventListener("htmx:wsAfterMessage", function () {
      sync();
      if (stick) toBottom();
      stick = nearBottom();
    });
    chat.addEventListener("htmx:wsClose", function (event) {
      var code = event.detail.event.code;
      if (code === 4403 || code === 4404) {
        status().textContent = "This conversation is not available. Reload the page to sign in again.";
      } else if (code !== 1000) {
        status().textContent = "Connection lost; reconnecting…";
      }
    });
    chat.addEventListener("htmx:wsOpen", function () {
      if (!generating()) status().textContent = "";
    });
    window.addEventListener("scroll", function () { stick = nearBottom(); }, { passive: true });
    toBottom();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setUp);
  } else {
    setUp();
  }
})();
