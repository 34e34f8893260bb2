/*
 * retrolytics.js — the Retrolytics browser snippet. Dependency-free; served by the collector.
 *
 *   <script defer src="http://127.0.0.1:8700/retrolytics.js"></script>
 *
 * Autocaptures pageviews, clicks, form submits and changes with the clicked element's hierarchy
 * (target first, up to <html>) as the event contract wants it: tag, id, classes, nth_child
 * (1-based among element siblings), the attributes href, name, type and data-*, and the target's
 * text. It never reads the value of any form field (passwords and hidden fields included).
 *
 * API: retrolytics.identify(userId[, traits]), retrolytics.track(name[, properties]),
 *      retrolytics.reset(), retrolytics.flush(). Calls made before the file loaded can be queued
 *      as arrays: window.retrolytics = [["track", "name", {...}]].
 * Options (attributes of the script tag): data-endpoint (default: /v1/events on the origin the
 *      snippet came from), data-autocapture="false" to send only identify/track and pageviews.
 * Elements inside [data-retrolytics-ignore] are not captured.
 *
 * Delivery: events are batched (up to 50 events or 60 kB, or after 1 s) and POSTed with
 * fetch(keepalive) so a request survives navigation; on a network error, 408, 429 or 5xx the
 * batch is retried with exponential backoff (honouring Retry-After). The collector rejects a
 * batch with a bad event as a whole and names it: the snippet drops that event and resends the
 * rest. When the page is hidden, whatever is queued goes out with navigator.sendBeacon.
 */
(function (window, document) {
  "use strict";

  var existing = window.retrolytics;
  if (existing && existing.__loaded) return;

  var VERSION = "0.1.0";
  var LIBRARY = { name: "retrolytics.js", version: VERSION };
  var SESSION_TIMEOUT_MS = 30 * 60 * 1000;
  var ANONYMOUS_KEY = "rl_anonymous_id";
  var SESSION_KEY = "rl_session";
  var USER_KEY = "rl_user_id";
  var COOKIE_MAX_AGE_S = 365 * 24 * 3600;
  // Limits of the event contract (ingestion/contract.py).
  var MAX_DEPTH = 100;
  var MAX_TEXT = 255;
  var MAX_ID = 1024;
  var MAX_CLASSES = 64;
  var MAX_CLASS_LENGTH = 256;
  var MAX_ATTRIBUTES = 64;
  var MAX_ATTRIBUTE_NAME = 64;
  var MAX_ATTRIBUTE_VALUE = 1024;
  var MAX_EVENT_BYTES = 60000;
  // Batching and retries. keepalive fetches and beacons carry at most 64 kB each.
  var BATCH_EVENTS = 50;
  var BATCH_BYTES = 60000;
  var FLUSH_DELAY_MS = 1000;
  var MAX_QUEUE = 1000;
  var FIRST_BACKOFF_MS = 1000;
  var MAX_BACKOFF_MS = 60000;
  // Never capture text users type or choose.
  var NO_TEXT_TAGS = { input: 1, textarea: 1, select: 1, option: 1, form: 1 };

  var script = document.currentScript;
  var endpoint =
    (script && script.getAttribute("data-endpoint")) ||
    (script && script.src ? new URL("/v1/events", script.src).href : "/v1/events");
  var autocapture = !(script && script.getAttribute("data-autocapture") === "false");

  // -- storage: localStorage when the browser lets us, memory otherwise ------------------------

  var memory = {};
  function load(key) {
    try {
      var value = window.localStorage.getItem(key);
      return value === null ? memory[key] || null : value;
    } catch (e) {
      return memory[key] || null;
    }
  }
  function save(key, value) {
    memory[key] = value;
    try {
      if (value === null) window.localStorage.removeItem(key);
      else window.localStorage.setItem(key, value);
    } catch (e) {
      /* private mode or quota: memory keeps it for this page */
    }
  }
  function readCookie(name) {
    var parts = document.cookie ? document.cookie.split("; ") : [];
    for (var i = 0; i < parts.length; i++) {
      var eq = parts[i].indexOf("=");
      if (parts[i].slice(0, eq) === name) return decodeURIComponent(parts[i].slice(eq + 1));
    }
    return null;
  }
  function writeCookie(name, value, maxAge) {
    document.cookie =
      name + "=" + encodeURIComponent(value) + "; Max-Age=" + maxAge + "; Path=/; SameSite=Lax";
  }

  // -- identities -------------------------------------------------------------------------------

  function uuid() {
    var c = window.crypto;
    if (c && typeof c.randomUUID === "function") return c.randomUUID();
    // randomUUID needs a secure context; getRandomValues does not.
    var b = new Uint8Array(16);
    c.getRandomValues(b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    var hex = "";
    for (var i = 0; i < 16; i++) hex += (b[i] + 0x100).toString(16).slice(1);
    return (
      hex.slice(0, 8) + "-" + hex.slice(8, 12) + "-" + hex.slice(12, 16) + "-" +
      hex.slice(16, 20) + "-" + hex.slice(20)
    );
  }

  // First-party cookie first (it survives a cleared localStorage), localStorage as the copy.
  function anonymousId() {
    var id = readCookie(ANONYMOUS_KEY) || load(ANONYMOUS_KEY);
    if (!id) id = uuid();
    writeCookie(ANONYMOUS_KEY, id, COOKIE_MAX_AGE_S);
    save(ANONYMOUS_KEY, id);
    return id;
  }

  // A session ends after 30 minutes without an event; any event extends it.
  function sessionId(now) {
    var session = null;
    try {
      session = JSON.parse(load(SESSION_KEY) || "null");
    } catch (e) {
      session = null;
    }
    if (!session || !session.id || now - session.last > SESSION_TIMEOUT_MS) {
      session = { id: uuid(), last: now };
    }
    session.last = now;
    save(SESSION_KEY, JSON.stringify(session));
    return session.id;
  }

  var anonymous = anonymousId();
  var userId = load(USER_KEY);

  // -- the element hierarchy ----------------------------------------------------------------------

  function tagOf(element) {
    var tag = String(element.tagName || "").toLowerCase();
    // The contract wants [a-z][a-z0-9-]*; exotic custom-element names are made to fit.
    tag = tag.replace(/[^a-z0-9-]/g, "-");
    return /^[a-z]/.test(tag) ? tag.slice(0, 64) : ("x-" + tag).slice(0, 64);
  }

  function isCapturedAttribute(name) {
    return name === "href" || name === "name" || name === "type" || name.indexOf("data-") === 0;
  }

  function nthChild(element) {
    var n = 1;
    for (var s = element.previousElementSibling; s; s = s.previousElementSibling) n++;
    return n;
  }

  function describe(element) {
    var described = { tag: tagOf(element) };
    var id = element.getAttribute("id");
    if (id) described.id = id.slice(0, MAX_ID);
    var classes = [];
    var list = element.classList || [];
    for (var i = 0; i < list.length && classes.length < MAX_CLASSES; i++) {
      if (list[i].length <= MAX_CLASS_LENGTH) classes.push(list[i]);
    }
    if (classes.length) described.classes = classes;
    described.nth_child = nthChild(element);
    var attributes = {};
    var count = 0;
    for (var j = 0; j < element.attributes.length && count < MAX_ATTRIBUTES; j++) {
      var name = element.attributes[j].name.toLowerCase();
      if (isCapturedAttribute(name) && name.length <= MAX_ATTRIBUTE_NAME) {
        attributes[name] = element.attributes[j].value.slice(0, MAX_ATTRIBUTE_VALUE);
        count++;
      }
    }
    if (count) described.attributes = attributes;
    return described;
  }

  function textOf(element) {
    if (NO_TEXT_TAGS[tagOf(element)] || element.isContentEditable) return null;
    var text = (element.textContent || "").replace(/\s+/g, " ").trim();
    return text ? text.slice(0, MAX_TEXT) : null;
  }

  // Target first, up to the root; null when the target sits in an ignored subtree.
  function targetOf(node) {
    var element = node && node.nodeType === 3 ? node.parentElement : node;
    if (!element || element.nodeType !== 1) return null;
    var elements = [];
    for (var e = element; e && e.nodeType === 1; e = e.parentElement) {
      if (e.hasAttribute("data-retrolytics-ignore")) return null;
      if (elements.length < MAX_DEPTH) elements.push(describe(e));
    }
    var target = { elements: elements };
    var text = textOf(element);
    if (text) target.text = text;
    return target;
  }

  // -- events ------------------------------------------------------------------------------------

  var referrer = document.referrer || null;

  function utm() {
    var found = null;
    var params = new URLSearchParams(window.location.search);
    ["source", "medium", "campaign", "term", "content"].forEach(function (key) {
      var value = params.get("utm_" + key);
      if (value) (found = found || {})[key] = value.slice(0, 200);
    });
    return found;
  }

  function context() {
    var ctx = {
      user_agent: navigator.userAgent,
      library: LIBRARY,
      screen: { width: window.screen.width, height: window.screen.height },
      locale: navigator.language || null,
    };
    var campaign = utm();
    if (campaign) ctx.utm = campaign;
    return ctx;
  }

  function newEvent(type) {
    var now = Date.now();
    var page = {
      url: window.location.href.slice(0, 4096),
      path: window.location.pathname.slice(0, 2048),
      title: document.title.slice(0, 1024),
    };
    if (referrer) page.referrer = referrer.slice(0, 4096);
    return {
      event_id: uuid(),
      type: type,
      occurred_at: new Date(now).toISOString(),
      anonymous_id: anonymous,
      user_id: userId,
      session_id: sessionId(now),
      page: page,
      context: context(),
    };
  }

  function capture(type, node) {
    var target = targetOf(node);
    if (!target) return;
    var event = newEvent(type);
    event.target = target;
    enqueue(event);
  }

  var lastPageviewUrl = null;
  function pageview() {
    if (window.location.href === lastPageviewUrl) return;
    if (lastPageviewUrl) referrer = lastPageviewUrl;
    lastPageviewUrl = window.location.href;
    enqueue(newEvent("pageview"));
  }

  // -- the queue and its delivery ------------------------------------------------------------------

  var queue = []; // serialised events not yet handed to the network
  var sending = false;
  var flushTimer = null;
  var retryTimer = null;
  var backoffMs = 0;

  function warn(message) {
    if (window.console && console.warn) console.warn("retrolytics: " + message);
  }

  function enqueue(event) {
    var json = JSON.stringify(event);
    if (json.length > MAX_EVENT_BYTES) {
      warn("dropped a " + event.type + " event of " + json.length + " bytes (limit 60000)");
      return;
    }
    queue.push(json);
    if (queue.length > MAX_QUEUE) {
      queue.splice(0, queue.length - MAX_QUEUE);
      warn("the collector has been unreachable for long; dropped the oldest events");
    }
    if (queue.length >= BATCH_EVENTS) flush();
    else if (!flushTimer) flushTimer = setTimeout(flush, FLUSH_DELAY_MS);
  }

  function takeBatch() {
    var batch = [];
    var bytes = 2;
    while (batch.length < queue.length && batch.length < BATCH_EVENTS) {
      var next = queue[batch.length].length + 1;
      if (batch.length && bytes + next > BATCH_BYTES) break;
      batch.push(queue[batch.length]);
      bytes += next;
    }
    queue.splice(0, batch.length);
    return batch;
  }

  function body(batch) {
    return "[" + batch.join(",") + "]";
  }

  function retryLater(batch, retryAfterSeconds) {
    queue = batch.concat(queue);
    backoffMs = Math.min(MAX_BACKOFF_MS, backoffMs ? backoffMs * 2 : FIRST_BACKOFF_MS);
    var wait = Math.max(backoffMs * (0.5 + Math.random() / 2), (retryAfterSeconds || 0) * 1000);
    retryTimer = setTimeout(function () {
      retryTimer = null;
      flush();
    }, wait);
  }

  // 400 with per-event problems: drop the bad events, send the good ones again at once.
  function dropRejected(batch, answer) {
    var bad = {};
    var problems = (answer && answer.problems) || [];
    problems.forEach(function (problem) {
      bad[problem.index] = true;
      warn("the collector refused an event: " + problem.reason);
    });
    if (!problems.length) {
      warn("the collector refused " + batch.length + " event(s): " + (answer && answer.error));
      return;
    }
    queue = batch.filter(function (_, index) {
      return !bad[index];
    }).concat(queue);
  }

  function flush() {
    if (flushTimer) {
      clearTimeout(flushTimer);
      flushTimer = null;
    }
    if (sending || retryTimer || !queue.length) return;
    var batch = takeBatch();
    sending = true;
    fetch(endpoint, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: body(batch),
      keepalive: true,
      credentials: "omit",
    })
      .then(function (response) {
        var status = response.status;
        if (status >= 200 && status < 300) {
          backoffMs = 0;
          return;
        }
        if (status === 408 || status === 429 || status >= 500) {
          retryLater(batch, parseFloat(response.headers.get("Retry-After")));
          return;
        }
        return response
          .json()
          .catch(function () {
            return null;
          })
          .then(function (answer) {
            dropRejected(batch, answer);
          });
      })
      .catch(function () {
        retryLater(batch, 0); // network error, collector down, CORS refused
      })
      .then(function () {
        sending = false;
        if (queue.length && !retryTimer) flush();
      });
  }

  // The page is going away: hand everything queued to the browser, which sends it afterwards.
  function flushOnHide() {
    if (flushTimer) {
      clearTimeout(flushTimer);
      flushTimer = null;
    }
    while (queue.length) {
      var batch = takeBatch();
      var queued = navigator.sendBeacon && navigator.sendBeacon(endpoint, body(batch));
      if (!queued) {
        queue = batch.concat(queue); // the browser's beacon quota is full: keep them
        return;
      }
    }
  }

  // -- autocapture --------------------------------------------------------------------------------

  if (autocapture) {
    document.addEventListener("click", function (e) { capture("click", e.target); }, true);
    document.addEventListener("submit", function (e) { capture("submit", e.target); }, true);
    document.addEventListener("change", function (e) { capture("change", e.target); }, true);
  }
  window.addEventListener("pagehide", flushOnHide);
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") flushOnHide();
  });
  // Single-page apps: a history change is a page change.
  ["pushState", "replaceState"].forEach(function (method) {
    var original = window.history[method];
    window.history[method] = function () {
      var result = original.apply(this, arguments);
      pageview();
      return result;
    };
  });
  window.addEventListener("popstate", pageview);
  window.addEventListener("pageshow", function (e) {
    if (e.persisted) {
      lastPageviewUrl = null; // back from the back/forward cache: a new view of the page
      pageview();
    }
  });

  // -- the public API -----------------------------------------------------------------------------

  var api = {
    __loaded: true,
    version: VERSION,
    endpoint: endpoint,

    identify: function (id, traits) {
      var text = id === null || id === undefined ? "" : String(id).trim();
      if (!text || text.length > 256) {
        warn("identify needs a user id of 1 to 256 characters");
        return;
      }
      userId = text;
      save(USER_KEY, userId);
      var event = newEvent("identify");
      if (traits && typeof traits === "object") event.properties = JSON.parse(JSON.stringify(traits));
      enqueue(event);
    },

    track: function (name, properties) {
      if (typeof name !== "string" || !name.trim() || name.length > 200) {
        warn("track needs an event name of 1 to 200 characters");
        return;
      }
      var event = newEvent("custom");
      event.name = name.trim();
      event.properties = properties ? JSON.parse(JSON.stringify(properties)) : {};
      enqueue(event);
    },

    // Logout: forget the user, start a new device identity and session.
    reset: function () {
      userId = null;
      save(USER_KEY, null);
      save(SESSION_KEY, null);
      writeCookie(ANONYMOUS_KEY, "", 0);
      save(ANONYMOUS_KEY, null);
      anonymous = anonymousId();
    },

    flush: flush,
  };
  window.retrolytics = api;

  pageview();
  if (existing && existing.length) {
    existing.forEach(function (call) {
      if (call && typeof api[call[0]] === "function") api[call[0]].apply(api, call.slice(1));
    });
  }
})(window, document);
