/* Vinh IOC — a reader of the server-sent event stream (/api/v1/events/stream) over fetch.
 *
 * EventSource can only listen to event names it knows in advance; the stream names each
 * event after its topic (alarm.raised, report.created, ...), and the dashboard follows topic
 * globs that modules declare. This reader parses the text/event-stream format itself and hands
 * every event to onEvent(topic, data). It reconnects after the server's "retry" delay with the
 * Last-Event-ID header, so the server replays what was missed.
 *
 * IocEvents.open(url, { onEvent: fn, onState: fn("open"|"retrying") }) -> { close: fn }
 */
(function (global) {
  "use strict";

  function open(url, handlers) {
    var lastId = null;
    var retryMs = 3000;
    var closed = false;
    var controller = null;

    function state(s) { if (handlers.onState) { handlers.onState(s); } }

    function dispatch(block) {
      var topic = "message";
      var data = [];
      var id = null;
      block.split("\n").forEach(function (line) {
        if (!line || line.charAt(0) === ":") { return; }
        var colon = line.indexOf(":");
        var field = colon === -1 ? line : line.slice(0, colon);
        var value = colon === -1 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") { topic = value; }
        else if (field === "data") { data.push(value); }
        else if (field === "id") { id = value; }
        else if (field === "retry" && /^\d+$/.test(value)) { retryMs = parseInt(value, 10); }
      });
      if (id !== null) { lastId = id; }
      if (!data.length) { return; }
      var payload;
      try { payload = JSON.parse(data.join("\n")); } catch (e) { payload = data.join("\n"); }
      try { handlers.onEvent(topic, payload); } catch (e) { /* one bad handler must not end the stream */ }
    }

    function connect() {
      if (closed) { return; }
      controller = typeof AbortController !== "undefined" ? new AbortController() : null;
      var headers = { Accept: "text/event-stream" };
      if (lastId !== null) { headers["Last-Event-ID"] = lastId; }
      fetch(url, { credentials: "same-origin", headers: headers, cache: "no-store", signal: controller ? controller.signal : undefined })
        .then(function (response) {
          if (!response.ok || !response.body) { throw new Error("HTTP " + response.status); }
          state("open");
          var reader = response.body.getReader();
          var decoder = new TextDecoder("utf-8");
          var buffer = "";
          function pump() {
            return reader.read().then(function (chunk) {
              if (chunk.done) { throw new Error("stream ended"); }
              buffer += decoder.decode(chunk.value, { stream: true }).replace(/\r\n?/g, "\n");
              var end;
              while ((end = buffer.indexOf("\n\n")) !== -1) {
                dispatch(buffer.slice(0, end));
                buffer = buffer.slice(end + 2);
              }
              return pump();
            });
          }
          return pump();
        })
        .catch(function () {
          if (closed) { return; }
          state("retrying");
          global.setTimeout(connect, retryMs);
        });
    }

    connect();
    return {
      close: function () { closed = true; if (controller) { controller.abort(); } }
    };
  }

  global.IocEvents = { open: open };
})(window);
