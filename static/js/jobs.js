// Job pages: the job's log lines, tailed through the API (``log/?after=<last line id>``) each
// time the page learns of progress, and the cancel button, hidden once the job is no longer
// queued or running. The import page calls FleetopsJobs.update(job) from its own progress
// script; the generic job page (#job-progress) is driven entirely from here. The pages work
// without it (they show the lines and the state they were rendered with).
(function () {
  "use strict";

  var FINISHED = ["succeeded", "partial", "failed", "cancelled"];
  var LABELS = {
    queued: "Queued", running: "Running", succeeded: "Succeeded",
    partial: "Finished with errors", failed: "Failed", cancelled: "Cancelled"
  };
  var fetching = false, again = false;

  function byId(id) { return document.getElementById(id); }

  // A cancelled job is over once its runner has stopped and recorded its counts (finished_at).
  function ended(job) {
    if (FINISHED.indexOf(job.status) === -1) { return false; }
    return job.status !== "cancelled" || Boolean(job.finished_at);
  }

  function lineItem(line) {
    var item = document.createElement("li");
    item.className = "job-line job-line-" + line.level;
    item.setAttribute("data-line-id", line.id);
    var time = document.createElement("time");
    time.setAttribute("datetime", line.created_at);
    time.textContent = line.created_at.slice(11, 19);  // UTC, as the page renders it
    var level = document.createElement("span");
    level.className = "job-line-level";
    level.textContent = line.level;
    var message = document.createElement("span");
    message.className = "job-line-message";
    message.textContent = line.message;
    item.append(time, level, message);
    return item;
  }

  function refreshLog() {
    var section = byId("job-log");
    if (!section) { return; }
    if (fetching) { again = true; return; }
    fetching = true;
    var url = section.getAttribute("data-log-api") + "?page_size=500&after=" +
      encodeURIComponent(section.getAttribute("data-after") || "0");
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (!data) { return; }
        var list = byId("job-log-lines");
        data.results.forEach(function (line) {
          if (list.querySelector('[data-line-id="' + line.id + '"]')) { return; }
          list.appendChild(lineItem(line));
          section.setAttribute("data-after", line.id);
        });
        if (list.children.length) { byId("job-log-empty").hidden = true; }
        if (data.next) { again = true; }
      })
      .catch(function () { /* the next update tries again */ })
      .then(function () {
        fetching = false;
        if (again) { again = false; refreshLog(); }
      });
  }

  function update(job) {
    var form = byId("job-cancel-form");
    if (form && job.status !== "queued" && job.status !== "running") { form.hidden = true; }
    refreshLog();
  }

  // --- the generic job page ------------------------------------------------------------------
  function showProgress(job) {
    var percent = job.percent || 0;
    var bar = byId("job-bar");
    bar.style.width = percent + "%";
    bar.setAttribute("aria-valuenow", percent);
    bar.classList.toggle("is-failed", job.status === "failed");
    byId("job-percent").textContent = percent + "%";
    byId("job-status").textContent = LABELS[job.status] || job.status;
    byId("job-processed").textContent = job.processed;
    byId("job-total").textContent = job.total;
    byId("job-succeeded").textContent = job.succeeded;
    byId("job-failed").textContent = job.failed;
    if (job.status === "failed" && job.error !== undefined) {
      byId("job-error").textContent = job.error;
      byId("job-error").hidden = false;
    }
    update(job);
  }

  function watch(root) {
    var jobId = root.getAttribute("data-job-id"), api = root.getAttribute("data-api");
    var finished = root.getAttribute("data-ended") === "true", timer = null;
    function poll() {
      if (finished) { return; }
      fetch(api, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (job) {
          if (!job) { return; }
          showProgress(job);
          if (ended(job)) {
            finished = true;
            root.setAttribute("data-ended", "true");
            window.clearInterval(timer);
          }
        })
        .catch(function () {});
    }
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    try {
      var socket = new WebSocket(scheme + window.location.host + "/ws/live/");
      socket.onopen = function () { byId("job-channel").textContent = "live"; };
      socket.onclose = function () { byId("job-channel").textContent = "polling"; };
      socket.onmessage = function (event) {
        var data = JSON.parse(event.data);
        if (data.type !== "job.progress" || data.id !== jobId) { return; }
        showProgress(data);
        if (FINISHED.indexOf(data.status) !== -1) { poll(); }  // the final fields from the API
      };
    } catch (error) { /* polling only */ }
    poll();
    timer = window.setInterval(poll, 2000);
  }

  window.FleetopsJobs = { ended: ended, update: update };
  var root = byId("job-progress");
  if (root) { watch(root); }
})();
