// Live progress of a backtest run: server-sent events from the API (data-events) when the
// browser and the page offer them; polling of the dashboard's progress endpoint (data-poll,
// every second) only when they do not, or once the event stream failed. When the run
// reaches a final state the page reloads and the server renders its report.
(function () {
  "use strict";
  var box = document.getElementById("bt-progress");
  if (!box || box.getAttribute("data-final") === "1") {
    return;
  }
  var FINAL = ["completed", "failed", "cancelled", "timed_out"];
  var POLL_MS = 1000;
  var labels = JSON.parse(box.getAttribute("data-labels") || "{}");
  var seconds = box.getAttribute("data-seconds") || "s";
  var bar = document.getElementById("bt-bar");
  var percent = document.getElementById("bt-percent");
  var state = document.getElementById("bt-state");
  var eta = document.getElementById("bt-eta");
  var source = null;
  var timer = null;
  var done = false;

  function show(data) {
    if (done || !data) {
      return;
    }
    if (typeof data.progress === "number") {
      var value = Math.max(0, Math.min(100, data.progress));
      bar.value = value;
      percent.textContent = Math.round(value) + "%";
    }
    if (data.state) {
      state.textContent = labels[data.state] || data.state;
    }
    if (typeof data.eta_s === "number") {
      eta.textContent = Math.round(data.eta_s) + " " + seconds;
    }
    if (FINAL.indexOf(data.state) >= 0) {
      finish();
    }
  }

  function finish() {
    done = true;
    if (source) {
      source.close();
      source = null;
    }
    if (timer) {
      clearInterval(timer);
      timer = null;
    }
    window.setTimeout(function () {
      window.location.reload();
    }, 400);
  }

  function parse(event) {
    try {
      return JSON.parse(event.data);
    } catch (err) {
      return null;
    }
  }

  function poll() {
    fetch(box.getAttribute("data-poll"), {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
      cache: "no-store"
    })
      .then(function (response) {
        return response.ok ? response.json() : null;
      })
      .then(show)
      .catch(function () {});
  }

  function startPolling() {
    if (done || timer) {
      return;
    }
    timer = window.setInterval(poll, POLL_MS);
    poll();
  }

  var events = box.getAttribute("data-events");
  if (events && window.EventSource) {
    source = new EventSource(events);
    source.addEventListener("progress", function (event) {
      show(parse(event));
    });
    source.addEventListener("end", function (event) {
      show(parse(event));
      if (!done) {
        finish();
      }
    });
    source.onerror = function () {
      // the stream failed (or the server closed it): stop it and poll instead
      if (source) {
        source.close();
        source = null;
      }
      startPolling();
    };
  } else {
    startPolling();
  }
})();
