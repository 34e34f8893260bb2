/*
 * Retro Shop's own behaviour: the cart cookie, signing in, and the custom events a real shop
 * would send (product_viewed, search_performed, signup_completed, purchase_completed).
 * Autocapture (clicks, submits, changes, pageviews) is retrolytics.js's job, not this file's.
 * It never changes the DOM above or before the elements a visitor clicks, so the captured
 * hierarchies stay those of demo/pages.py, which the traffic generator sends.
 */
(function () {
  "use strict";

  var CART_COOKIE = "shop_cart";
  var USER_COOKIE = "shop_user";

  function analytics() {
    return window.retrolytics && window.retrolytics.track ? window.retrolytics : null;
  }

  function track(name, properties) {
    var rl = analytics();
    if (rl) rl.track(name, properties);
  }

  function pageData() {
    var element = document.getElementById("page-data");
    return element ? JSON.parse(element.textContent) : {};
  }

  function readCart() {
    var match = document.cookie.match(new RegExp("(?:^|; )" + CART_COOKIE + "=([^;]*)"));
    var lines = [];
    if (!match) return lines;
    decodeURIComponent(match[1]).split(",").forEach(function (part) {
      var pieces = part.split(":");
      if (pieces.length === 2 && pieces[0]) lines.push([pieces[0], parseInt(pieces[1], 10) || 1]);
    });
    return lines;
  }

  function writeCart(lines) {
    var value = lines.map(function (line) { return line[0] + ":" + line[1]; }).join(",");
    document.cookie =
      CART_COOKIE + "=" + encodeURIComponent(value) + "; Path=/; Max-Age=2592000; SameSite=Lax";
  }

  function addToCart(productId) {
    var lines = readCart();
    var line = lines.filter(function (l) { return l[0] === productId; })[0];
    if (line) line[1] += 1;
    else lines.push([productId, 1]);
    writeCart(lines);
  }

  function removeFromCart(productId) {
    writeCart(readCart().filter(function (l) { return l[0] !== productId; }));
  }

  // u_ + the first 12 hex digits of SHA-256(lower-cased e-mail): a stable id, not the address.
  function userIdFor(email) {
    var bytes = new TextEncoder().encode(email.trim().toLowerCase());
    return window.crypto.subtle.digest("SHA-256", bytes).then(function (digest) {
      var hex = Array.prototype.map
        .call(new Uint8Array(digest), function (b) { return (b + 0x100).toString(16).slice(1); })
        .join("");
      return "u_" + hex.slice(0, 12);
    });
  }

  function nextPath() {
    var next = new URLSearchParams(window.location.search).get("next");
    return next && next.charAt(0) === "/" && next.charAt(1) !== "/" ? next : "/";
  }

  function signIn(form, isSignup) {
    var next = nextPath();
    userIdFor(form.elements.email.value).then(function (userId) {
      document.cookie = USER_COOKIE + "=" + userId + "; Path=/; Max-Age=2592000; SameSite=Lax";
      var rl = analytics();
      if (rl) {
        rl.identify(userId);
        if (isSignup) {
          rl.track("signup_completed", {
            method: "email",
            source: next === "/checkout" ? "checkout" : "header",
          });
        }
      }
      window.location.assign(next);
    });
  }

  document.addEventListener("click", function (event) {
    var add = event.target.closest("#add-to-cart");
    if (add) {
      addToCart(add.getAttribute("data-product-id"));
      var note = document.querySelector(".cart-note");
      if (!note) {
        note = document.createElement("p");
        note.className = "cart-note";
        add.parentElement.appendChild(note); // after the button: nothing before it moves
      }
      note.textContent = "Added to your cart (" + readCart().length + " products).";
      return;
    }
    var remove = event.target.closest("button.remove-item");
    if (remove) {
      removeFromCart(remove.getAttribute("data-product-id"));
      window.location.reload();
    }
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.id === "signup-form" || form.id === "login-form") {
      event.preventDefault();
      signIn(form, form.id === "signup-form");
    }
  });

  var data = pageData();
  if (data.product) track("product_viewed", data.product);
  if (data.search) track("search_performed", data.search);
  if (data.order) {
    // Once per order, even if the confirmation page is reloaded.
    var key = "shop_tracked_" + data.order.order_id;
    if (!window.sessionStorage.getItem(key)) {
      window.sessionStorage.setItem(key, "1");
      track("purchase_completed", data.order);
    }
  }
})();
