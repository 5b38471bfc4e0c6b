// Player page: plays /<app>/<key>/index.m3u8 with hls.js (served by the gateway itself) where
// Media Source Extensions exist, else with native HLS, and follows the stream's state from the JSON
// API so it starts, stops and restarts by itself when the publisher comes, goes and comes back.
// index.m3u8 is a multivariant playlist naming the Low-Latency HLS (fMP4) media playlist; hls.js
// runs in lowLatencyMode and catches up gently (at most 1.1x) when it falls behind the live edge.
// Shows the latency (now minus the EXT-X-PROGRAM-DATE-TIME of the frame on screen: the wall clock
// at which that media reached the gateway) and the rendition playing.
// Tests read window.playerState and the data-* attributes of #player.
(function () {
  "use strict";
  var root = document.getElementById("player");
  var video = root.querySelector("video");
  var stateEl = document.getElementById("state");
  var detailsEl = document.getElementById("details");
  var latencyEl = document.getElementById("latency");
  var renditionEl = document.getElementById("rendition");
  var errorEl = document.getElementById("error");
  var uncarriedEl = document.getElementById("uncarried");
  var params = new URLSearchParams(location.search);
  // read_auth: the viewer's playback token, put on the first playlist and on status polls
  // (the playlists carry it on to every other URI); status answers renew it.
  var token = root.dataset.token || "";
  var apiBase = root.dataset.api;
  var apiUrl = withToken(apiBase);
  var pollMs = Number(root.dataset.pollMs) || 2000;
  var mime = root.dataset.mime;
  // ?engine=hlsjs or ?engine=native forces one playback path (for testing both).
  var forced = params.get("engine");
  // ?playlist=ts plays the MPEG-TS media playlist (ts.m3u8, next to index.m3u8), ?playlist=cmaf
  // the LL-HLS one, instead of the multivariant index.m3u8.
  var PLAYLISTS = { index: "index.m3u8", ts: "ts.m3u8", cmaf: "cmaf.m3u8" };
  var playlistBase = siblingUrl(root.dataset.playlist, PLAYLISTS[params.get("playlist")]);
  var playlistUrl = withToken(playlistBase);
  root.dataset.source = playlistUrl;
  var link = document.getElementById("playlist-link");
  if (link) {
    link.href = playlistUrl;
    link.textContent = playlistUrl;
  }
  // Reload a live stream whose playback has not moved for this long although it is not paused.
  var STALL_RELOAD_MS = 15000;
  // At most one hls.js media-error recovery attempt in this window before a full reload.
  var MEDIA_RECOVERY_WINDOW_MS = 10000;
  var MAX_ERRORS_KEPT = 50;
  // How often latency and rendition are refreshed.
  var TICK_MS = 500;
  var HLS_CONFIG = {
    lowLatencyMode: true, // EXT-X-PART, preload hints and blocking playlist reloads
    liveDurationInfinity: true,
    // Behind the target latency, play up to 10% faster (audio pitch is kept) rather than jump.
    maxLiveSyncPlaybackRate: 1.1,
  };

  var ps = (window.playerState = {
    stream: "unknown", // from the API: waiting | live | ended | unknown
    engine: null, // "hls.js" | "native" | "none"
    playlist: playlistUrl, // the URL given to the player
    attached: false,
    needsReload: false,
    session: null, // started_at of the session being played
    loads: 0,
    fatalErrors: 0,
    errors: [], // {at, type, details, fatal}
    endlist: false, // the playlist carried EXT-X-ENDLIST
    lowLatency: null, // hls.js: the media playlist is LL-HLS (EXT-X-PART-INF); null until loaded
    rendition: null, // {level, width, height, bitrate, averageBitrate, frameRate, codecs, label}
    lastPollOk: null,
  });
  // Computed when read, so a reader never sees a value older than the frame on screen:
  // latency: seconds since the frame on screen reached the gateway (its PDT), or null;
  // targetLatency: hls.js's goal (seconds) for it, or null.
  Object.defineProperty(ps, "latency", { enumerable: true, get: currentLatency });
  Object.defineProperty(ps, "targetLatency", { enumerable: true, get: targetLatency });
  var hls = null;
  var lastLive = false;
  var lastMediaRecovery = 0;
  var lastProgress = { time: -1, at: Date.now() };
  var bufferCodecs = ""; // hls.js: codecs of the tracks being buffered (media playlists carry none)
  var nextVariant = null; // the only variant of the multivariant playlist about to be loaded
  var nativeVariant = null; // ... and of the one loaded, for native HLS (see variantRendition)

  // The URL of file `name` in the directory of `url` (url itself when name is not given).
  function withToken(url) {
    if (!token) return url;
    return url + (url.indexOf("?") < 0 ? "?" : "&") + "token=" + encodeURIComponent(token);
  }

  function siblingUrl(url, name) {
    if (!name) return url;
    var slash = url.lastIndexOf("/");
    return url.slice(0, slash + 1) + name;
  }

  function chooseEngine() {
    var nativeOk = video.canPlayType(mime) !== "";
    var hlsOk = typeof window.Hls !== "undefined" && window.Hls.isSupported();
    if (forced === "native" && nativeOk) return "native";
    if (forced === "hlsjs" && hlsOk) return "hls.js";
    // hls.js first wherever Media Source Extensions exist (the pattern hls.js documents): native
    // HLS in desktop Chromium is young (see playable); Safari on iOS has no MSE.
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
      // Media of this publish no output carries (a codec HLS here cannot hold): say so, since
      // the player shows only what it got (a picture without sound, or nothing).
      var uncarried = info.uncarried || [];
      uncarriedEl.hidden = !uncarried.length;
      uncarriedEl.textContent = uncarried.length ? "Not playable here: " + uncarried.join("; ") : "";
    }
  }

  function showError(text) {
    errorEl.hidden = !text;
    errorEl.textContent = text || "";
  }

  // hls.js's own words on an error (a message, the URL concerned), for whoever debugs it.
  function hlsErrorReason(data) {
    var parts = [];
    if (data.reason) parts.push(String(data.reason));
    else if (data.error && data.error.message) parts.push(String(data.error.message));
    if (data.response && data.response.code) parts.push("HTTP " + data.response.code);
    var url = data.url || (data.context && data.context.url) || (data.frag && data.frag.url);
    if (url) parts.push(String(url));
    return parts.join(" ");
  }

  function recordError(type, details, fatal, reason) {
    var error = { at: Date.now(), type: String(type), details: String(details), fatal: !!fatal };
    if (reason) error.reason = String(reason);
    ps.errors.push(error);
    if (ps.errors.length > MAX_ERRORS_KEPT) ps.errors.shift();
    if (fatal) {
      ps.fatalErrors += 1;
      root.dataset.fatalErrors = String(ps.fatalErrors);
    }
  }

  // Wall-clock time (ms) of the frame on screen from EXT-X-PROGRAM-DATE-TIME, or null.
  function playingDate() {
    if (!ps.attached || !(video.currentTime > 0)) return null;
    if (hls) {
      var date = hls.playingDate;
      return date ? date.getTime() : null;
    }
    // Native HLS: Safari maps the first PDT to getStartDate(); Chromium has no getStartDate.
    if (typeof video.getStartDate === "function") {
      var start = video.getStartDate().getTime();
      if (isFinite(start) && start > 0) return start + video.currentTime * 1000;
    }
    return null;
  }

  function currentLatency() {
    var at = playingDate();
    return at === null || !isFinite(at) ? null : Math.round(Date.now() - at) / 1000;
  }

  function targetLatency() {
    var target = hls ? hls.targetLatency : null;
    return typeof target === "number" && isFinite(target) ? Math.round(target * 1000) / 1000 : null;
  }

  function updateLatency() {
    var latency = currentLatency();
    root.dataset.latency = latency === null ? "" : latency.toFixed(3);
    latencyEl.textContent = latency === null ? "" : "latency " + latency.toFixed(1) + " s";
  }

  function describeRendition(r) {
    var parts = [];
    if (r.width && r.height) parts.push(r.width + "×" + r.height);
    if (r.frameRate) parts.push(Math.round(r.frameRate * 100) / 100 + " fps");
    var rate = r.averageBitrate || r.bitrate;
    if (rate) parts.push(Math.round(rate / 1000) + " kbit/s");
    if (r.codecs) parts.push(r.codecs.split(",").join(", "));
    return parts.join(" · ");
  }

  // What is playing: the current hls.js level (RESOLUTION, BANDWIDTH, CODECS, FRAME-RATE of its
  // EXT-X-STREAM-INF) or natively the only variant, completed from the decoder (size) and the
  // buffered tracks (codecs) where there is no multivariant playlist (?playlist=ts).
  function updateRendition() {
    var r = { level: null, width: 0, height: 0, bitrate: 0, averageBitrate: 0, frameRate: 0 };
    r.codecs = "";
    var level = hls && hls.currentLevel >= 0 ? hls.levels[hls.currentLevel] : null;
    if (level) {
      r.level = hls.currentLevel;
      r.width = level.width || 0;
      r.height = level.height || 0;
      r.bitrate = level.bitrate || 0;
      r.averageBitrate = level.averageBitrate || 0;
      r.frameRate = level.frameRate || 0;
      r.codecs = [level.videoCodec, level.audioCodec].filter(Boolean).join(",");
    }
    if (!level && !hls && nativeVariant) {
      r.level = nativeVariant.level;
      r.width = nativeVariant.width;
      r.height = nativeVariant.height;
      r.bitrate = nativeVariant.bitrate;
      r.averageBitrate = nativeVariant.averageBitrate;
      r.frameRate = nativeVariant.frameRate;
      r.codecs = nativeVariant.codecs;
    }
    if (!r.codecs && hls) r.codecs = bufferCodecs;
    if (!r.width && video.videoWidth) {
      r.width = video.videoWidth;
      r.height = video.videoHeight;
    }
    r.label = describeRendition(r);
    var rendition = ps.attached && r.label ? r : null;
    var label = rendition ? rendition.label : "";
    if ((ps.rendition ? ps.rendition.label : "") !== label) {
      root.dataset.rendition = label;
      renditionEl.textContent = label;
    }
    ps.rendition = rendition;
  }

  function tick() {
    updateLatency();
    updateRendition();
  }

  function teardown() {
    if (hls) {
      hls.destroy();
      hls = null;
    }
    video.removeAttribute("src");
    video.load();
    ps.attached = false;
    ps.lowLatency = null;
    delete root.dataset.lowLatency;
    bufferCodecs = "";
    nativeVariant = null;
    tick();
  }

  function fail(type, details, reason) {
    // Fatal for this attachment: drop it, and load again when the API next says live.
    recordError(type, details, true, reason);
    teardown();
    ps.needsReload = true;
    showError("playback stopped (" + details + "); retrying while the stream is live");
  }

  function trackCodecs(data) {
    var codecs = [];
    ["video", "audiovideo", "audio"].forEach(function (kind) {
      var track = data && data[kind];
      if (track && track.codec) codecs.push(track.codec);
    });
    return codecs.join(",");
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
      hls = new window.Hls(HLS_CONFIG);
      hls.on(window.Hls.Events.MANIFEST_PARSED, function () {
        video.play().catch(function () {});
      });
      hls.on(window.Hls.Events.LEVEL_LOADED, function (_event, data) {
        ps.endlist = !data.details.live;
        ps.lowLatency = data.details.partTarget > 0 || !!data.details.partList; // EXT-X-PART-INF
        root.dataset.lowLatency = String(ps.lowLatency);
      });
      hls.on(window.Hls.Events.LEVEL_SWITCHED, updateRendition);
      hls.on(window.Hls.Events.BUFFER_CODECS, function (_event, data) {
        bufferCodecs = trackCodecs(data) || bufferCodecs;
        updateRendition();
      });
      hls.on(window.Hls.Events.ERROR, function (_event, data) {
        var reason = hlsErrorReason(data);
        if (!data.fatal) {
          recordError(data.type, data.details, false, reason);
          return;
        }
        var now = Date.now();
        if (data.type === window.Hls.ErrorTypes.MEDIA_ERROR && now - lastMediaRecovery > MEDIA_RECOVERY_WINDOW_MS) {
          // hls.js's documented recovery for decode/append errors, once, before giving up.
          recordError(data.type, data.details, false, reason);
          lastMediaRecovery = now;
          hls.recoverMediaError();
          return;
        }
        fail(data.type, data.details, reason);
      });
      hls.loadSource(playlistUrl);
      hls.attachMedia(video);
    } else if (ps.engine === "native") {
      nativeVariant = nextVariant;
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
  video.addEventListener("resize", updateRendition);

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

  // Whether a media playlist's text is worth attaching to.
  function playable(text) {
    if (text.indexOf("#EXT-X-ENDLIST") !== -1) return true;
    var segments = text.split("#EXTINF:").length - 1;
    if (chooseEngine() === "native") return segments >= NATIVE_MIN_SEGMENTS;
    return segments > 0 || text.indexOf("#EXT-X-PART:") !== -1;
  }

  // An attribute list (RFC 8216 §4.2) as an object: {BANDWIDTH: "1000", CODECS: "avc1...", ...}.
  function attributes(list) {
    var out = {};
    var pattern = /([A-Z0-9-]+)=("[^"]*"|[^,]*)/g;
    var match;
    while ((match = pattern.exec(list)) !== null) out[match[1]] = match[2].replace(/^"|"$/g, "");
    return out;
  }

  // The variants of a multivariant playlist: [{uri (resolved against url), attrs}], or [].
  function variants(text, url) {
    var out = [];
    var lines = text.split(/\r?\n/);
    for (var i = 0; i < lines.length; i++) {
      if (lines[i].indexOf("#EXT-X-STREAM-INF:") !== 0) continue;
      for (var j = i + 1; j < lines.length; j++) {
        var line = lines[j].trim();
        if (line && line.charAt(0) !== "#") {
          var uri = new URL(line, new URL(url, location.href)).href;
          out.push({ uri: uri, attrs: attributes(lines[i].slice("#EXT-X-STREAM-INF:".length)) });
          break;
        }
      }
    }
    return out;
  }

  // Native HLS says nothing of the variant it plays; with only one, it is that one.
  function variantRendition(attrs) {
    var size = /^(\d+)x(\d+)$/.exec(attrs.RESOLUTION || "");
    return {
      level: 0,
      width: size ? Number(size[1]) : 0,
      height: size ? Number(size[2]) : 0,
      bitrate: Number(attrs.BANDWIDTH) || 0,
      averageBitrate: Number(attrs["AVERAGE-BANDWIDTH"]) || 0,
      frameRate: Number(attrs["FRAME-RATE"]) || 0,
      codecs: attrs.CODECS || "",
    };
  }

  function fetchText(url) {
    return fetch(url, { cache: "no-store" }).then(function (response) {
      return response.ok ? response.text() : "";
    });
  }

  // Resolves true once the playlist (through its first variant, if multivariant) has media.
  function playlistReady(url, depth) {
    return fetchText(url).then(function (text) {
      if (!text) return false;
      var found = depth === 0 ? variants(text, url) : [];
      if (depth === 0) nextVariant = found.length === 1 ? variantRendition(found[0].attrs) : null;
      if (found.length) return playlistReady(found[0].uri, depth + 1);
      return playable(text);
    });
  }

  function loadWhenPlaylistExists(session) {
    playlistReady(playlistUrl, 0)
      .then(function (ready) {
        if (ready) {
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
        if (info.token && info.token !== token) {
          token = info.token;
          apiUrl = withToken(apiBase);
          playlistUrl = withToken(playlistBase);
        }
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
  setInterval(tick, TICK_MS);
  poll();
})();
