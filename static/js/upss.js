/* UPSS progressive enhancement: every page works without it. */
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // An error summary takes focus, so screen readers announce the problems first.
  const summary = document.querySelector("[data-focus-on-load]");
  if (summary) summary.focus();

  followQuestionStatus();
  setUpAutosave();
  setUpLockTime();
  setUpAskDraft();
  setUpReadAloud();
  setUpThreeDSecure();
  setUpCardForm();
});

/* A question's page follows its payment being confirmed without reloading: the status
   endpoint sends the page's status panel (templates/asker/_question_panel.html) as a reload
   would show it. The status tag is a polite live region that stays in place: only its text
   changes, so the new status is announced once. What the status means and what the asker may
   do now (#question-next) is replaced as a whole. Focus stays where it was; if it was on
   something the new panel no longer has, it goes to the new part of the panel. */
function followQuestionStatus() {
  const panel = document.getElementById("question-panel");
  if (!panel || !panel.dataset.pollUrl) return;
  let delay = 1000;

  const counterpart = (old, region) => {
    if (old.id) return region.querySelector(`#${CSS.escape(old.id)}`);
    const href = old.getAttribute("href");
    if (href) return Array.from(region.querySelectorAll("a[href]")).find(
      (a) => a.getAttribute("href") === href) || null;
    const action = old.form && old.form.getAttribute("action");
    if (action) return Array.from(region.querySelectorAll("form")).find(
      (f) => f.getAttribute("action") === action)?.querySelector("button") || null;
    return null;
  };

  const apply = (html) => {
    const template = document.createElement("template");
    template.innerHTML = html;
    const fresh = template.content.getElementById("question-panel");
    if (!fresh) return;
    const status = document.getElementById("question-status");
    const freshStatus = fresh.querySelector("#question-status");
    if (status && freshStatus) {
      status.dataset.status = freshStatus.dataset.status;
      if (status.textContent !== freshStatus.textContent) {
        status.textContent = freshStatus.textContent;
      }
    }
    const next = document.getElementById("question-next");
    const freshNext = fresh.querySelector("#question-next");
    if (next && freshNext && next.textContent !== freshNext.textContent) {
      const focused = next.contains(document.activeElement) ? document.activeElement : null;
      next.replaceWith(freshNext);
      if (focused) {
        const target = counterpart(focused, freshNext);
        if (target) {
          target.focus();
        } else {
          freshNext.tabIndex = -1;
          freshNext.focus();
        }
      }
    }
    if (fresh.dataset.pollUrl) panel.dataset.pollUrl = fresh.dataset.pollUrl;
    else delete panel.dataset.pollUrl;
  };

  const poll = async () => {
    try {
      const response = await fetch(panel.dataset.pollUrl, {
        headers: {Accept: "application/json"}, cache: "no-store"});
      const type = response.headers.get("Content-Type") || "";
      if (response.ok && type.includes("json")) apply((await response.json()).html || "");
    } catch (e) { /* network hiccup: try again later */ }
    if (!panel.dataset.pollUrl) return;
    delay = Math.min(delay * 1.5, 15000);
    window.setTimeout(poll, delay);
  };
  window.setTimeout(poll, delay);
}

/* Stripe reports a failed check as an error; localstripe returns the PaymentIntent, which is
   then back at requires_payment_method. Only these statuses mean the money is on its way. */
function paymentWentThrough(outcome) {
  if (!outcome || outcome.error || !outcome.paymentIntent) return false;
  return ["succeeded", "processing", "requires_capture"].includes(outcome.paymentIntent.status);
}

/* Test mode 3-D Secure: localstripe's Stripe.js opens its authentication box. */
function setUpThreeDSecure() {
  const box = document.getElementById("three-d-secure");
  if (!box || typeof Stripe === "undefined") return;
  const button = document.getElementById("start-authentication");
  const result = document.getElementById("authentication-result");
  button.addEventListener("click", async () => {
    button.disabled = true;
    const stripe = Stripe(box.dataset.stripeKey);
    const outcome = await stripe.confirmCardPayment(box.dataset.clientSecret);
    if (!paymentWentThrough(outcome)) {
      result.textContent = box.dataset.failedMessage;
      result.className = "notice notice--error";
      button.disabled = false;
      button.focus();
    } else {
      window.location.assign(box.dataset.returnUrl);
    }
  });
}

/* Real Stripe: the card element; card data goes from the browser to Stripe only. */
function setUpCardForm() {
  const form = document.getElementById("card-form");
  if (!form || typeof Stripe === "undefined") return;
  const stripe = Stripe(form.dataset.stripeKey);
  const card = stripe.elements().create("card");
  card.mount("#card-element");
  /* A failed payment is said in one place, the page's error summary (#payment-problem): it
     takes the place of whatever was there (an earlier failure), and as a new alert it is
     read once; focus goes back to the pay button. */
  const problem = document.getElementById("payment-problem");
  const showProblem = (reason) => {
    const template = document.getElementById("payment-problem-template");
    const summary = template.content.firstElementChild.cloneNode(true);
    summary.querySelector("a").textContent = reason
      ? `${form.dataset.failedBefore} ${reason} ${form.dataset.failedAfter}`
      : form.dataset.failedMessage;
    problem.replaceChildren(summary);
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    const outcome = await stripe.confirmCardPayment(form.dataset.clientSecret,
                                                    {payment_method: {card: card}});
    if (!paymentWentThrough(outcome)) {
      showProblem(outcome && outcome.error && outcome.error.message);
      button.disabled = false;
      button.focus();  /* disabling it may have moved focus away */
    } else {
      window.location.assign(form.dataset.returnUrl);
    }
  });
}

/* The answer is saved as it is typed: to the server every few seconds, and to this browser
   at once, so neither an expired lock nor an expired sign-in loses a word. The browser's copy
   remembers whether the server has it too: a copy the server never got is put back when the
   page is opened again (after signing in again, say); one it got is not (the server's draft
   may be newer, from another computer). */
function readLocalDraft(key) {
  let raw = null;
  try { raw = window.localStorage.getItem(key); } catch (e) { return null; }
  if (!raw) return null;
  try {
    const stored = JSON.parse(raw);
    if (stored && typeof stored.text === "string") return stored;
  } catch (e) { /* an older copy: the text alone */ }
  return {text: raw, saved: false, legacy: true};
}

function writeLocalDraft(key, text, saved) {
  try {
    window.localStorage.setItem(key, JSON.stringify({text: text, saved: saved}));
  } catch (e) { /* storage may be disabled or full */ }
}

function setUpAutosave() {
  const form = document.getElementById("answer-form");
  if (!form) return;
  const text = form.querySelector("textarea");
  const status = document.getElementById("draft-status");
  const token = form.querySelector("input[name$=csrf_token]").value;
  const key = form.dataset.draftKey;
  let timer = null;
  let lastSaved = text.value;
  let restored = false;

  const local = readLocalDraft(key);
  if (local && local.text && local.text !== text.value &&
      (local.legacy ? local.text.length > text.value.length : !local.saved)) {
    text.value = local.text;
    status.textContent = status.dataset.restoredText;
    restored = true;
    timer = window.setTimeout(() => save(), 1500);  /* the server never got it: send it now */
  }

  const signedOut = (response) => {
    if (response.status === 401) return true;
    if (!response.redirected) return false;
    try {
      return new URL(response.url).pathname === status.dataset.signInPath;
    } catch (e) { return false; }
  };

  const save = async () => {
    timer = null;
    if (text.value === lastSaved) return;
    const body = new URLSearchParams({csrf_token: token, answer: text.value});
    let response;
    try {
      response = await fetch(form.dataset.draftUrl, {
        method: "POST", body: body, credentials: "same-origin",
        headers: {Accept: "application/json"}});
    } catch (e) {
      status.textContent = status.dataset.offlineText;
      return;
    }
    const type = response.headers.get("Content-Type") || "";
    if (signedOut(response)) {
      /* The sign-in page: the session ended on the server. */
      status.textContent = status.dataset.signedOutText;
    } else if (response.ok && type.includes("json")) {
      lastSaved = body.get("answer");
      if (text.value === lastSaved) writeLocalDraft(key, lastSaved, true);
      const time = new Date().toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
      const saved = status.dataset.savedText.replace("%(time)s", time);
      /* Right after putting text back, say both, so the first message is not lost. */
      status.textContent = restored ? `${status.dataset.restoredText} ${saved}` : saved;
      restored = false;
    } else if (response.status === 400 && type.includes("json")) {
      /* The server says what went wrong: the form's token no longer matches (signed out, or
         signed in again since the page was opened), or something in the text itself (e.g. an
         invisible control character). */
      let data = {};
      try { data = await response.json(); } catch (e) { /* not JSON after all */ }
      if (data.reason === "signed_out") status.textContent = status.dataset.signedOutText;
      else if (data.reason === "expired") status.textContent = status.dataset.expiredText;
      else status.textContent = data.error || status.dataset.notSavedText;
    } else if (response.status === 400) {
      status.textContent = status.dataset.expiredText;
    } else {
      status.textContent = status.dataset.notSavedText;
    }
  };

  text.addEventListener("input", () => {
    writeLocalDraft(key, text.value, false);
    if (timer) window.clearTimeout(timer);
    timer = window.setTimeout(save, 1500);
  });
  form.addEventListener("submit", () => {
    if (timer) window.clearTimeout(timer);
  });
}

/* The time left to answer, counted down every few seconds; a warning is announced (a live
   region) when the time is nearly up, and again, urgently, just before the end. The count uses
   the seconds left when the page was made, so a wrong clock on this computer does not matter. */
function setUpLockTime() {
  const box = document.getElementById("lock-time");
  if (!box) return;
  const leftText = document.getElementById("lock-time-left");
  const polite = document.getElementById("lock-warning");
  const urgent = document.getElementById("lock-alert");
  const ends = Date.now() + Number(box.dataset.secondsLeft) * 1000;
  const warnAt = Number(box.dataset.warnSeconds);
  const finalAt = Number(box.dataset.finalSeconds);
  const locale = document.documentElement.lang || undefined;
  let level = box.dataset.level;

  const unit = (value, name) => new Intl.NumberFormat(
    locale, {style: "unit", unit: name, unitDisplay: "long"}).format(value);
  const duration = (seconds) => {
    const minutes = Math.floor(seconds / 60);
    if (minutes < 1) return box.dataset.lessThanMinute;
    const parts = [];
    if (minutes >= 60) parts.push(unit(Math.floor(minutes / 60), "hour"));
    if (minutes % 60) parts.push(unit(minutes % 60, "minute"));
    try {
      return new Intl.ListFormat(locale, {type: "unit", style: "long"}).format(parts);
    } catch (e) { return parts.join(" "); }
  };
  const notice = (region, message, label, urgently) => {
    const wrapper = document.createElement("div");
    wrapper.className = urgently ? "notice notice--error" : "notice";
    const p = document.createElement("p");
    if (label) {
      const strong = document.createElement("strong");
      strong.textContent = label;
      p.append(strong, " ");
    }
    p.append(message);
    wrapper.append(p);
    region.replaceChildren(wrapper);
  };

  const tick = () => {
    const seconds = Math.max(0, Math.round((ends - Date.now()) / 1000));
    const now = seconds <= 0 ? "over" : seconds <= finalAt ? "final"
      : seconds <= warnAt ? "warn" : "none";
    leftText.textContent = now === "over" ? box.dataset.overText
      : box.dataset.leftText.replace("%(duration)s", duration(seconds));
    if (now === level) return;
    level = now;
    const warning = box.dataset.warningText.replace("%(duration)s", duration(seconds));
    if (now === "warn") {
      urgent.replaceChildren();
      notice(polite, warning, "", false);
    } else if (now === "final") {
      polite.replaceChildren();
      notice(urgent, warning, box.dataset.warningLabel, true);
    } else if (now === "over") {
      polite.replaceChildren();
      notice(urgent, box.dataset.overText, "", true);
    }
  };
  tick();
  window.setInterval(tick, 15000);
}

/* The ask form keeps what was typed in this browser until the question reaches payment. */
function setUpAskDraft() {
  document.querySelectorAll("[data-clear-draft]").forEach((el) => {
    try { window.localStorage.removeItem(el.dataset.clearDraft); } catch (e) { /* ignore */ }
  });
  const form = document.getElementById("ask-form");
  if (!form) return;
  const key = form.dataset.draftKey;
  const fields = Array.from(form.querySelectorAll("input[type=text], textarea, select"));
  try {
    const saved = JSON.parse(window.localStorage.getItem(key) || "null");
    if (saved && fields.every((f) => !f.value)) {
      fields.forEach((f) => { if (saved[f.name]) f.value = saved[f.name]; });
      const status = document.getElementById("ask-draft-status");
      status.textContent = status.dataset.restoredText;
    }
  } catch (e) { /* storage may be disabled */ }
  form.addEventListener("input", () => {
    const values = {};
    fields.forEach((f) => { values[f.name] = f.value; });
    try { window.localStorage.setItem(key, JSON.stringify(values)); } catch (e) { /* ignore */ }
  });
}

/* "Read aloud" with the browser's own speech synthesis, only where the browser has it. */
function setUpReadAloud() {
  if (!("speechSynthesis" in window)) return;
  document.querySelectorAll("[data-read-aloud]").forEach((text) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "button button--secondary read-aloud";
    button.textContent = text.dataset.readAloud;
    button.addEventListener("click", () => {
      if (window.speechSynthesis.speaking) {
        window.speechSynthesis.cancel();
        return;
      }
      const utterance = new SpeechSynthesisUtterance(text.innerText);
      utterance.lang = text.lang || document.documentElement.lang;
      utterance.onend = utterance.onerror = () => {
        button.textContent = text.dataset.readAloud;
      };
      button.textContent = text.dataset.stopReading;
      window.speechSynthesis.speak(utterance);
    });
    text.insertAdjacentElement("beforebegin", button);
  });
}

/* A tall text box reached with the keyboard is shown whole when it fits the window: browsers
   bring only the caret's line into view, which can leave most of the box below the screen.
   Not on a mouse or touch press, where moving the page would move the text under the pointer. */
(() => {
  let pressing = false;
  document.addEventListener("pointerdown", () => { pressing = true; }, true);
  document.addEventListener("pointerup", () => { pressing = false; }, true);
  document.addEventListener("keydown", () => { pressing = false; }, true);
  document.addEventListener("focusin", (event) => {
    const field = event.target;
    if (pressing || !(field instanceof HTMLTextAreaElement)) return;
    const room = window.innerHeight;
    const box = field.getBoundingClientRect();
    if (box.height > room || (box.top >= 0 && box.bottom <= room)) return;
    field.scrollIntoView({block: "nearest"});  // with the field's CSS scroll-margin
    const shown = field.getBoundingClientRect();  // the margin may not fit: the box itself must
    if (shown.top < 0) window.scrollBy(0, shown.top);
    else if (shown.bottom > room) window.scrollBy(0, shown.bottom - room);
  });
})();
