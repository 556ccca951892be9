/* UPSS progressive enhancement: every page works without it. */
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // An error summary takes focus, so screen readers announce the problems first.
  const summary = document.querySelector("[data-focus-on-load]");
  if (summary) summary.focus();

  followQuestionStatus();
  setUpAutosave();
  setUpAskDraft();
  setUpReadAloud();
  setUpThreeDSecure();
  setUpCardForm();
});

/* The status page follows a payment being confirmed without reloading the page. */
function followQuestionStatus() {
  const status = document.getElementById("question-status");
  if (!status || !status.dataset.pollUrl) return;
  let delay = 1000;
  const poll = async () => {
    try {
      const response = await fetch(status.dataset.pollUrl, {headers: {Accept: "application/json"}});
      if (response.ok) {
        const data = await response.json();
        if (data.status !== status.dataset.status) {
          status.dataset.status = data.status;
          status.textContent = data.label;
          if (data.status !== "awaiting_payment") return;
        }
        if (data.payment_error) { window.location.reload(); return; }
      }
    } catch (e) { /* network hiccup: try again later */ }
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
  const errors = document.getElementById("card-errors");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    const outcome = await stripe.confirmCardPayment(form.dataset.clientSecret,
                                                    {payment_method: {card: card}});
    if (!paymentWentThrough(outcome)) {
      errors.textContent = (outcome.error && outcome.error.message) || form.dataset.failedMessage;
      button.disabled = false;
    } else {
      window.location.assign(form.dataset.returnUrl);
    }
  });
}

/* The answer is saved as it is typed: to the server every few seconds, and to this browser
   at once, so neither an expired lock nor an expired sign-in loses a word. */
function setUpAutosave() {
  const form = document.getElementById("answer-form");
  if (!form) return;
  const text = form.querySelector("textarea");
  const status = document.getElementById("draft-status");
  const token = form.querySelector("input[name$=csrf_token]").value;
  const key = form.dataset.draftKey;
  let timer = null;
  let lastSaved = text.value;

  try {
    const local = window.localStorage.getItem(key);
    if (local && local !== text.value && local.length > text.value.length) {
      text.value = local;
      status.textContent = status.dataset.restoredText;
    }
  } catch (e) { /* storage may be disabled */ }

  const save = async () => {
    timer = null;
    if (text.value === lastSaved) return;
    const body = new URLSearchParams({csrf_token: token, answer: text.value});
    try {
      const response = await fetch(form.dataset.draftUrl, {method: "POST", body: body,
                                                           credentials: "same-origin"});
      if (response.ok && response.headers.get("Content-Type").includes("json")) {
        lastSaved = body.get("answer");
        const time = new Date().toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
        status.textContent = status.dataset.savedText.replace("%(time)s", time);
      } else if (response.status === 400 &&
                 (response.headers.get("Content-Type") || "").includes("json")) {
        /* The server said what is wrong with the text (e.g. an invisible control character). */
        status.textContent = (await response.json()).error || status.dataset.notSavedText;
      } else {
        status.textContent = status.dataset.notSavedText;
      }
    } catch (e) {
      status.textContent = status.dataset.offlineText;
    }
  };

  text.addEventListener("input", () => {
    try { window.localStorage.setItem(key, text.value); } catch (e) { /* ignore */ }
    if (timer) window.clearTimeout(timer);
    timer = window.setTimeout(save, 1500);
  });
  form.addEventListener("submit", () => {
    if (timer) window.clearTimeout(timer);
  });
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
