// Player page: plays /<app>/<key>/index.m3u8 with native HLS where the browser has it, else hls.js
// (served by the gateway itself), and follows the stream's state from the JSON API so it starts,
// stops and restarts by itself when the publisher comes, goes and comes back.
// Tests read window.playerState and the data-* attributes of #player.
(function () {
  "use strict";
  var root = document.getElementById("player");
  var video = root.querySelector("video");
  var stateEl = document.getElementById("state");
  var detailsEl = document.getElementById("details");
  var errorEl = document.getElementById("error");
  var playlistUrl = root.dataset.playlist;
  var apiUrl = root.dataset.api;
  var pollMs = Number(root.dataset.pollMs) || 2000;
  var mime = root.dataset.mime;
  // ?engine=hlsjs or ?engine=native forces one playback path (for testing both).
  var forced = new URLSearchParams(location.search).get("engine");
  // Reload a live stream whose playback has not moved for this long although it is not paused.
  var STALL_RELOAD_MS = 15000;
  // At most one hls.js media-error recovery attempt in this window before a full reload.
  var MEDIA_RECOVERY_WINDOW_MS = 10000;
  var MAX_ERRORS_KEPT = 50;

  var ps = (window.playerState = {
    stream: "unknown", // from the API: waiting | live | ended | unknown
    engine: null, // "hls.js" | "native" | "none"
    attached: false,
    needsReload: false,
    session: null, // started_at of the session being played
    loads: 0,
    fatalErrors: 0,
    errors: [], // {at, type, details, fatal}
    endlist: false, // the playlist carried EXT-X-ENDLIST
    lastPollOk: null,
  });
  var hls = null;
  var lastLive = false;
  var lastMediaRecovery = 0;
  var lastProgress = { time: -1, at: Date.now() };

  function chooseEngine() {
    var nativeOk = video.canPlayType(mime) !== "";
    var hlsOk = typeof window.Hls !== "undefined" && window.Hls.isSupported();
    if (forced === "native" && nativeOk) return "native";
    if (forced === "hlsjs" && hlsOk) return "hls.js";
    // hls.js first wherever Media Source Extensions exist (the pattern hls.js documents): native
    // HLS in desktop Chromium is young (see loadWhenPlaylistExists); Safari on iOS has no MSE.
    if (hlsOk) return "hls.js";
    if (nativeOk) return "native";
    return "none";
  }

  function setState(stream, info) {
    ps.stream = stream;
    root.dataset.state = stream;
    var labels = {
      waiting: "waiting for publisher",
      starting: "starting…",
      live: "live",
      ended: "ended",
      unknown: "connecting…",
    };
    stateEl.textContent = labels[stream] || stream;
    stateEl.className = "state state-" + stream;
    if (info) {
      var parts = [];
      if (info.codecs && info.codecs.length) parts.push(info.codecs.join(", "));
      if (info.width && info.height) parts.push(info.width + "×" + info.height);
      var rate = (info.video_bitrate || 0) + (info.audio_bitrate || 0);
      if (rate > 0) parts.push(Math.round(rate / 1000) + " kbit/s");
      detailsEl.textContent = parts.join(" · ");
    }
  }

  function showError(text) {
    errorEl.hidden = !text;
    errorEl.textContent = text || "";
  }

  function recordError(type, details, fatal) {
    ps.errors.push({ at: Date.now(), type: String(type), details: String(details), fatal: !!fatal });
    if (ps.errors.length > MAX_ERRORS_KEPT) ps.errors.shift();
    if (fatal) {
      ps.fatalErrors += 1;
      root.dataset.fatalErrors = String(ps.fatalErrors);
    }
  }

  function teardown() {
    if (hls) {
      hls.destroy();
      hls = null;
    }
    video.removeAttribute("src");
    video.load();
    ps.attached = false;
  }

  function fail(type, details) {
    // Fatal for this attachment: drop it, and load again when the API next says live.
    recordError(type, details, true);
    teardown();
    ps.needsReload = true;
    showError("playback stopped (" + details + "); retrying while the stream is live");
  }

  function load(session) {
    teardown();
    ps.engine = chooseEngine();
    root.dataset.engine = ps.engine;
    ps.session = session;
    ps.needsReload = false;
    ps.endlist = false;
    ps.loads += 1;
    lastProgress = { time: -1, at: Date.now() };
    showError("");
    if (ps.engine === "hls.js") {
      hls = new window.Hls({ liveDurationInfinity: true });
      hls.on(window.Hls.Events.MANIFEST_PARSED, function () {
        video.play().catch(function () {});
      });
      hls.on(window.Hls.Events.LEVEL_LOADED, function (_event, data) {
        ps.endlist = !data.details.live;
      });
      hls.on(window.Hls.Events.ERROR, function (_event, data) {
        if (!data.fatal) {
          recordError(data.type, data.details, false);
          return;
        }
        var now = Date.now();
        if (data.type === window.Hls.ErrorTypes.MEDIA_ERROR && now - lastMediaRecovery > MEDIA_RECOVERY_WINDOW_MS) {
          // hls.js's documented recovery for decode/append errors, once, before giving up.
          recordError(data.type, data.details, false);
          lastMediaRecovery = now;
          hls.recoverMediaError();
          return;
        }
        fail(data.type, data.details);
      });
      hls.loadSource(playlistUrl);
      hls.attachMedia(video);
    } else if (ps.engine === "native") {
      video.src = playlistUrl;
      video.play().catch(function () {});
    } else {
      showError("This browser can play neither HLS nor Media Source Extensions.");
      return;
    }
    ps.attached = true;
  }

  video.addEventListener("error", function () {
    if (ps.engine === "native" && ps.attached) {
      var code = video.error ? video.error.code : 0;
      var message = video.error && video.error.message ? ": " + video.error.message : "";
      fail("nativeError", "media error " + code + message);
    }
  });

  function stalled() {
    if (!ps.attached || video.paused || video.ended) {
      lastProgress = { time: video.currentTime, at: Date.now() };
      return false;
    }
    if (video.currentTime !== lastProgress.time) {
      lastProgress = { time: video.currentTime, at: Date.now() };
      return false;
    }
    return Date.now() - lastProgress.at > STALL_RELOAD_MS;
  }

  // A publisher is live a second or two before its first segment and playlist exist; attaching
  // then fails. Chromium's native HLS (v156) also fails with DEMUXER_ERROR_COULD_NOT_PARSE on a
  // live playlist with EXT-X-MEDIA-SEQUENCE and fewer than 3 segments, so natively we wait for 3.
  var NATIVE_MIN_SEGMENTS = 3;

  function playable(text) {
    if (chooseEngine() !== "native" || text.indexOf("#EXT-X-ENDLIST") !== -1) return true;
    return text.split("#EXTINF:").length - 1 >= NATIVE_MIN_SEGMENTS;
  }

  function loadWhenPlaylistExists(session) {
    fetch(playlistUrl, { cache: "no-store" })
      .then(function (response) {
        return response.ok ? response.text() : "";
      })
      .then(function (text) {
        if (text && playable(text)) {
          load(session);
        } else {
          lastLive = false; // not attached yet: try again at the next poll
          setState("starting", null);
        }
      })
      .catch(function (error) {
        lastLive = false;
        recordError("playlist", String(error), false);
      });
  }

  function poll() {
    fetch(apiUrl, { cache: "no-store" })
      .then(function (response) {
        if (response.status === 404) return { state: "waiting" };
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (info) {
        ps.lastPollOk = Date.now();
        var stream = info.state || "unknown";
        setState(stream, info);
        var live = stream === "live";
        var session = info.started_at || null;
        if (live) {
          // Publisher (re)connected, a fatal error dropped us, a new session started, or playback froze.
          var frozen = stalled();
          if (frozen) recordError("stall", "no progress for " + STALL_RELOAD_MS + " ms", false);
          if (!ps.attached || ps.needsReload || !lastLive || session !== ps.session || frozen) {
            loadWhenPlaylistExists(session);
          }
        }
        lastLive = live;
      })
      .catch(function (error) {
        // The gateway itself is unreachable: keep the player as it is and ask again.
        recordError("api", String(error), false);
      })
      .finally(function () {
        setTimeout(poll, pollMs);
      });
  }

  setState("unknown", null);
  poll();
})();
