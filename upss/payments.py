"""Paying for questions with Stripe: start a payment, test-mode payments, webhook events.

A question is paid only when Stripe says so: its signed ``payment_intent.succeeded`` webhook, or,
when that webhook is lost, the same answer fetched from Stripe by ``check_unconfirmed_payments``
(a scheduled job) or by the asker opening the pay page again. All three go through
``apply_payment_intent``, which moves the question to ``queued`` and posts the ledger transaction
in one commit (the caller's); the status guard and the ledger key ``payment:<PaymentIntent id>``
make a repeat do nothing. Every webhook event is also stored once by its id (``StripeEvent``).
The amount always comes from the stored question, never from a form. Every idempotency key
starts with the installation id (``upss.installation``).

Pages reach Stripe only through this module (and ``connect``, ``payouts``):

* **Errors pages show**, re-exported from the Stripe boundary so a page never imports it:
  ``GatewayError`` (Stripe did not answer or refused; ``outcome_unknown`` when a charge may
  have gone through), ``CardDeclined`` (the card was refused) and ``InvalidWebhook`` (a webhook
  whose signature or content is wrong). They are the very same classes, so ``except`` clauses
  here and in the pages catch the same errors.
* **What pages read from Stripe's settings**: ``checkout_settings()`` (publishable key,
  Stripe.js URL, test panel, origins for the CSP header), ``tip_payment_intent()`` (a tip's
  PaymentIntent for the pay page), ``receive_webhook()`` (signature check of a webhook).
* **Money the asker's receipt shows**: ``receipt()`` (the split of the price, and paid tips).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import connect, ledger, money, notifications, questions, stripe_money
from .installation import idempotency_key
from .models import Question, StripeEvent, Tip, User, utcnow
from .stripe_gateway import CardDeclined as CardDeclined  # errors pages show: re-exported
from .stripe_gateway import GatewayError as GatewayError
from .stripe_gateway import InvalidWebhook as InvalidWebhook
from .stripe_gateway import PaymentIntent, WebhookEvent, gateway

log = logging.getLogger(__name__)

#: Shown when Stripe gives no reason of its own.
DEFAULT_FAILURE = "The payment did not go through."
#: PaymentIntent states in which the asker has nothing more to do (money taken or being taken).
PAID_OR_PAYING = frozenset({"succeeded", "processing", "requires_capture"})
#: At most this many questions are looked up at Stripe per run of the check job.
CHECK_BATCH = 50


class AlreadyPaid(questions.QuestionError):
    """The question is past payment."""


def _pay_key(session: Session, question: Question) -> str:
    # A retry after a failed charge needs a new PaymentIntent (localstripe cannot re-confirm
    # one whose charge failed), hence the attempt number in the key after the first.
    n = question.payment_attempts
    parts = ("question", question.id, "pay") + ((n,) if n > 1 else ())
    return idempotency_key(session, *parts)


def _new_payment_intent(session: Session, question: Question) -> PaymentIntent:
    # The attempt counter is flushed, not committed: if Stripe does not answer, the request
    # rolls back and the next try sends the same key, so Stripe returns the PaymentIntent it
    # may already have made instead of a second one.
    question.payment_attempts += 1
    session.flush()
    return gateway().create_payment_intent(
        amount_cents=question.price_cents, currency=question.currency,
        metadata={"question_id": question.id}, idempotency_key=_pay_key(session, question),
    )


def payment_for(session: Session, question: Question, asker: User) -> PaymentIntent:
    """The PaymentIntent the asker pays ``question`` with, created on first use.

    The first call moves the question from ``draft`` to ``awaiting_payment``. Later calls ask
    Stripe for its state; a payment Stripe reports as succeeded is applied at once (its webhook
    may be late or lost), after which ``question.status`` is ``queued``.
    """
    questions.check_owner(question, asker)
    if question.status == "draft":
        questions.lock(session, question)  # concurrent first opens: one creates, all share it
    if question.status == "draft":
        try:
            with session.begin_nested():
                intent = _new_payment_intent(session, question)
                questions.start_payment(session, question, asker, intent.id,
                                        first_check_after=_first_check_after())
            return intent
        except questions.InvalidTransition:
            # Another request (a second tab, a double click) started it first with the same
            # idempotency key, so Stripe gave both the same PaymentIntent: use theirs.
            session.refresh(question)
    if question.status != "awaiting_payment":
        raise AlreadyPaid(f"question {question.id} is {question.status}")
    intent = gateway().retrieve_payment_intent(question.payment_intent_id)
    if intent.status == "succeeded":
        apply_payment_intent(session, intent)
    return intent


def pay_with_test_card(session: Session, question: Question, asker: User,
                       scenario: str) -> PaymentIntent:
    """Test mode: pay ``question`` with a Stripe test card chosen on the pay page's panel.

    A payment already taken (e.g. one whose answer was lost to a timeout) is returned, never
    confirmed again. After a failed charge a fresh PaymentIntent replaces the old one (which
    is cancelled). The confirmation's idempotency key names the PaymentIntent and the card, so
    resending after a timeout gets Stripe's first answer back. A declined card records
    ``payment_error`` and raises ``CardDeclined``; the question stays payable.
    """
    questions.check_owner(question, asker)
    questions.lock(session, question)  # a double click confirms once; the second sees it paid
    intent = payment_for(session, question, asker)
    if question.status != "awaiting_payment" or intent.status in PAID_OR_PAYING:
        return intent
    if question.payment_error or intent.status == "canceled":
        if intent.status != "canceled":
            gateway().cancel_payment_intent(intent.id)
        intent = _new_payment_intent(session, question)
        question.payment_intent_id = intent.id
        question.payment_error = None
        session.flush()
    try:
        return gateway().confirm_with_test_card(
            intent.id, scenario,
            idempotency_key(session, "question", question.id, "confirm", intent.id, scenario))
    except CardDeclined as exc:
        record_payment_failure(session, question, exc.message)
        raise


@dataclass(frozen=True)
class CheckoutSettings:
    """What the pay pages and the security headers need to know about Stripe (read from the
    gateway on every call, so a replaced gateway is seen at once)."""

    publishable_key: str
    #: Where the pay page loads Stripe.js from: localstripe's stand-in, or Stripe's own.
    js_url: str
    #: The test-mode pay panel exists only on localstripe and never with a live key.
    test_panel_allowed: bool
    js_origin: str
    api_origin: str
    #: Where Stripe's hosted Connect onboarding lives (a form may redirect there).
    onboarding_origin: str


def checkout_settings() -> CheckoutSettings:
    """Stripe's settings as pages and templates use them (the attribute names are the
    gateway's, so templates read ``stripe.js_url`` and ``stripe.publishable_key`` as before)."""
    stripe = gateway()
    return CheckoutSettings(
        publishable_key=stripe.publishable_key, js_url=stripe.js_url,
        test_panel_allowed=stripe.test_panel_allowed, js_origin=stripe.js_origin,
        api_origin=stripe.api_origin, onboarding_origin=stripe.onboarding_origin)


def receive_webhook(payload: bytes, signature_header: str | None, *,
                    connect: bool = False) -> WebhookEvent:
    """Verify a webhook's ``Stripe-Signature`` and read its event; ``InvalidWebhook`` if the
    signature or the content is wrong. ``connect``: it came to the Connect endpoint, which has
    its own signing secret. Nothing is stored: ``handle_webhook_event`` applies the event."""
    return gateway().parse_webhook(payload, signature_header, connect=connect)


@dataclass(frozen=True)
class Receipt:
    """The asker's receipt of a paid question: the price split at its frozen commission."""

    payout_cents: int
    commission_cents: int
    #: The question's paid tips, in id order (all of each goes to the answerer).
    tips: list[Tip]


def receipt(session: Session, question: Question) -> Receipt:
    """The answerer's share and the commission of ``question``'s price (``money.split`` at the
    commission frozen at payment), and its paid tips. Only for a paid question."""
    payout, commission = money.split(question.price_cents, question.commission_bps)
    tips = session.scalars(select(Tip).where(Tip.question_id == question.id,
                                             Tip.status == "paid")).all()
    return Receipt(payout_cents=payout, commission_cents=commission, tips=list(tips))


TIP_MIN_CENTS = 100
TIP_MAX_CENTS = 10_000


class InvalidTip(questions.QuestionError):
    """A tip amount outside the allowed range, or a question that cannot be tipped."""


def start_tip(session: Session, question: Question, asker: User, amount_cents: int) -> Tip:
    """A tip for the answerer of a closed question, with its PaymentIntent (all of it goes
    to the answerer: there is no commission on tips)."""
    questions.check_owner(question, asker)
    if question.status != "closed" or question.answerer_id is None:
        raise InvalidTip("only an accepted answer can be tipped")
    if type(amount_cents) is not int or not TIP_MIN_CENTS <= amount_cents <= TIP_MAX_CENTS:
        raise InvalidTip("tip amount out of range")
    questions.lock(session, question)
    waiting = session.scalar(select(Tip).where(
        Tip.question_id == question.id, Tip.status == "awaiting_payment",
        Tip.amount_cents == amount_cents).order_by(Tip.id.desc()).limit(1))
    if waiting is not None and waiting.payment_intent_id:
        return waiting  # the same tip started again (a double click, a second tab)
    tip = Tip(question_id=question.id, answerer_id=question.answerer_id,
              amount_cents=amount_cents, currency=question.currency)
    session.add(tip)
    session.flush()
    intent = gateway().create_payment_intent(
        amount_cents=amount_cents, currency=tip.currency, metadata={"tip_id": tip.id},
        idempotency_key=idempotency_key(session, "tip", tip.id, "pay"))
    tip.payment_intent_id = intent.id
    session.flush()
    return tip


def tip_payment_intent(tip: Tip) -> PaymentIntent:
    """The PaymentIntent a tip is paid with, as Stripe has it now (for the pay page)."""
    return gateway().retrieve_payment_intent(tip.payment_intent_id)


def pay_tip_with_test_card(session: Session, tip: Tip, scenario: str) -> PaymentIntent:
    """Test mode: pay a tip with a Stripe test card. A declined card ends this tip attempt."""
    if tip.status != "awaiting_payment":
        raise AlreadyPaid(f"tip {tip.id} is {tip.status}")
    try:
        return gateway().confirm_with_test_card(
            tip.payment_intent_id, scenario,
            idempotency_key(session, "tip", tip.id, "confirm", scenario))
    except CardDeclined as exc:
        tip.status = "failed"
        tip.payment_error = exc.message
        session.flush()
        raise


def handle_webhook_event(session: Session, event: WebhookEvent) -> str:
    """Apply a verified Stripe event exactly once and return what was done.

    A repeated event id returns ``"duplicate"`` and changes nothing; the event row, the state
    change and the ledger posting are flushed together for the caller to commit. An event that
    cannot be applied yet (its payment is not in the ledger, or Stripe did not answer a look-up)
    returns ``"retry: …"`` with nothing stored, for the caller to answer non-2xx.
    """
    handler = _HANDLERS.get(event.type)
    try:
        with session.begin_nested():
            session.add(StripeEvent(id=event.id, type=event.type, object_id=event.object_id))
    except IntegrityError:
        return "duplicate"
    try:
        with session.begin_nested():
            outcome = handler(session, event) if handler else "ignored: type not used"
    except (stripe_money.NotYetApplicable, GatewayError) as exc:
        # Not stored as processed: Stripe sends it again (the caller answers non-2xx).
        session.rollback()
        log.info("stripe event %s (%s) cannot be applied yet: %s", event.id, event.type, exc)
        return f"retry: {exc}"
    stored = session.get(StripeEvent, event.id)
    stored.outcome = outcome[:255]
    session.flush()
    if not outcome.startswith("applied"):
        log.info("stripe event %s (%s): %s", event.id, event.type, outcome)
    return outcome


def apply_payment_intent(session: Session, intent: PaymentIntent) -> str:
    """Apply what Stripe says about a PaymentIntent (fetched, not from a webhook).

    The same handlers as the webhook's, so a payment found by looking it up is applied exactly
    as its event would have been, and at most once whichever comes first.
    """
    if intent.status == "succeeded":
        return _payment_succeeded(session, intent)
    if intent.status == "requires_payment_method" and intent.failure_message:
        return _payment_failed(session, intent)
    return f"nothing to apply: payment {intent.status}"


def _first_check_after() -> timedelta:
    return timedelta(minutes=current_app.config["UPSS_PAYMENT_CHECK_AFTER_MINUTES"])


def check_unconfirmed_payments(session: Session, now: datetime) -> str:
    """Job: ask Stripe about questions still awaiting payment, in case a webhook was lost.

    A question is asked about ``UPSS_PAYMENT_CHECK_AFTER_MINUTES`` (M) after payment started,
    then at 2M, 4M, 8M … after it, while that is within ``UPSS_PAYMENT_CHECK_FOR_HOURS``; then
    ``payment_checks_ended_at`` is set and the question page says so. Only due questions are
    read (an index on ``payment_check_due_at``), at most ``CHECK_BATCH`` per run.
    """
    first = _first_check_after()
    give_up_after = timedelta(hours=current_app.config["UPSS_PAYMENT_CHECK_FOR_HOURS"])
    due = session.execute(
        select(Question.id, Question.payment_intent_id)
        .where(Question.payment_check_due_at <= now, Question.status == "awaiting_payment")
        .order_by(Question.payment_check_due_at).limit(CHECK_BATCH)).all()
    applied = 0
    for question_id, payment_intent_id in due:
        try:
            intent = gateway().retrieve_payment_intent(payment_intent_id)
        except GatewayError as exc:
            log.warning("could not ask Stripe about question %s: %s", question_id, exc)
            intent = None
        question = session.scalar(select(Question).where(Question.id == question_id)
                                  .with_for_update())
        if question.status != "awaiting_payment" or question.payment_check_due_at is None:
            continue  # a webhook or the asker got there first
        if intent is not None and intent.id == question.payment_intent_id:
            applied += apply_payment_intent(session, intent).startswith("applied")
        if question.status != "awaiting_payment":
            continue
        question.payment_checks += 1
        next_check = question.payment_started_at + first * 2 ** question.payment_checks
        if next_check - question.payment_started_at > give_up_after:
            question.payment_check_due_at = None
            question.payment_checks_ended_at = now
        else:
            question.payment_check_due_at = next_check
        session.flush()
    return f"{len(due)} asked, {applied} applied" if due else None


#: Stripe keeps an idempotency key at least this long: a refund is re-sent under it only
#: within it.
REFUND_KEY_LIFETIME = timedelta(hours=24)
#: A refund still ``requested`` this long after it was asked for was left by a process that
#: died before sending it (or before committing Stripe's answer).
STALE_REFUND = timedelta(minutes=2)


def refund_question(session: Session, question: Question, action: str, actor: User | None,
                    now: datetime, note: str = "") -> str:
    """Refund ``question`` in full, in two phases (see ``send_refund``); returns the refund's
    status. Owns its transactions: phase 1 is committed before Stripe is asked."""
    questions.refund(session, question, action, actor, now, note)
    return send_refund(session, question.id, now)


def cancel(session: Session, question: Question, asker: User, now: datetime) -> str:
    """The asker withdraws a paid question still waiting in the queue: full refund."""
    questions.check_owner(question, asker)
    return refund_question(session, question, "cancel", asker, now)


def send_refund(session: Session, question_id: int, now: datetime) -> str:
    """Phase 2 of a refund (``questions.refund`` was phase 1 and is committed): ask Stripe to
    refund the question's payment, outside any database transaction, then commit the outcome;
    returns the new ``refund_status``. Owns its transactions.

    Stripe said yes → ``sent`` and the ledger posts ``refund:<Stripe refund id>`` (escrow →
    stripe_balance). No clear answer (timeout, 409, 429, 5xx) → ``unknown``: looked up later by
    ``resolve_unfinished_refunds``, never posted twice. A clear refusal → ``failed``, shown to
    the organizer, nothing posted.
    """
    session.commit()
    question = session.get(Question, question_id)
    payment_intent_id = question.payment_intent_id
    key = idempotency_key(session, "question", question_id, "refund")
    session.commit()
    refund, error = None, None
    try:
        refund = gateway().refund_payment_intent(payment_intent_id, key,
                                                 metadata={"question_id": question_id})
    except GatewayError as exc:
        error = exc
    question = session.scalar(select(Question).where(Question.id == question_id)
                              .with_for_update())
    if question.refund_status in ("requested", "unknown"):
        if refund is not None:
            stripe_money.post_refund(session, question, refund)
        elif error.outcome_unknown:
            question.refund_status = "unknown"
            question.refund_failure = f"no clear answer from Stripe: {error}"[:500]
        else:
            question.refund_status = "failed"
            question.refund_failure = f"Stripe refused the refund: {error}"[:500]
            log.error("refund of question %s refused: %s", question_id, error)
    session.commit()
    return question.refund_status


def resolve_unfinished_refunds(session: Session, now: datetime) -> str | None:
    """Job: settle refunds whose outcome is not known (``unknown``, or ``requested`` and left
    behind). Stripe's refunds of the payment are looked up first; only if there is none is the
    refund sent again with the same key, while Stripe keeps keys; after that it is marked
    ``failed`` for the organizer (never sent under a new key blindly). Owns its transactions.
    """
    session.commit()
    ids = list(session.scalars(select(Question.id).where(
        (Question.refund_status == "unknown")
        | ((Question.refund_status == "requested")
           & (Question.refund_requested_at <= now - STALE_REFUND))).order_by(Question.id)))
    session.commit()
    outcomes: dict[str, int] = {}
    for question_id in ids:
        question = session.get(Question, question_id)
        payment_intent_id, requested_at = question.payment_intent_id, question.refund_requested_at
        session.commit()
        try:
            found = [r for r in gateway().find_refunds(payment_intent_id)
                     if r.status in ("succeeded", "pending", "requires_action")]
        except GatewayError as exc:
            log.warning("could not look up the refund of question %s: %s", question_id, exc)
            outcome = "still unknown"
        else:
            if not found and now - requested_at < REFUND_KEY_LIFETIME:
                outcome = "resent: " + send_refund(session, question_id, now)
            else:
                question = session.scalar(select(Question).where(Question.id == question_id)
                                          .with_for_update())
                if question.refund_status not in ("requested", "unknown"):
                    outcome = "already settled"
                elif found:
                    stripe_money.post_refund(session, question, found[0])
                    outcome = "found"
                else:
                    question.refund_status = "failed"
                    question.refund_failure = ("Stripe has no refund for this question and "
                                               "its key has expired: refund it by hand")
                    outcome = "not at Stripe: failed"
                session.commit()
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return ", ".join(f"{n} {what}" for what, n in sorted(outcomes.items())) or None


def _question_for(session: Session, intent: PaymentIntent) -> Question | None:
    try:
        question_id = int(intent.metadata.get("question_id", ""))
    except ValueError:
        return None
    return session.scalar(
        select(Question).where(Question.id == question_id).with_for_update()
    )


def _tip_succeeded(session: Session, intent: PaymentIntent) -> str:
    tip = session.scalar(select(Tip).where(Tip.payment_intent_id == intent.id)
                         .with_for_update())
    if tip is None or str(tip.id) != intent.metadata.get("tip_id"):
        return "ignored: no tip for this payment"
    if tip.status == "paid":
        return "ignored: tip already paid"
    if intent.amount != tip.amount_cents or intent.currency != tip.currency:
        return "ignored: amount does not match the tip"
    tip.status, tip.paid_at, tip.payment_error = "paid", utcnow(), None
    question = session.get(Question, tip.question_id)
    notifications.enqueue(session, session.get(User, tip.answerer_id), "tip_received", {
        "question_id": question.id, "title": question.title,
        "amount_cents": tip.amount_cents, "currency": tip.currency}, tip.paid_at)
    ledger.post(session, f"payment:{intent.id}", f"Tip {tip.id} for question "
                f"{tip.question_id}", [(ledger.STRIPE_BALANCE, tip.amount_cents),
                                       (ledger.payable_account(tip.answerer_id),
                                        -tip.amount_cents)], tip.currency)
    return "applied: tip paid"


def _payment_succeeded(session: Session, intent: PaymentIntent) -> str:
    if "tip_id" in intent.metadata:
        return _tip_succeeded(session, intent)
    question = _question_for(session, intent)
    if question is None:
        return "ignored: no question for this payment"
    if question.payment_intent_id != intent.id:
        # Not the PaymentIntent we expect for this question (an older, cancelled attempt, or
        # another environment sharing the Stripe account): reconciliation reports it.
        log.warning("payment %s is not question %s's current payment", intent.id,
                    question.id)
        return "ignored: not the question's current payment"
    if question.status != "awaiting_payment":
        return f"ignored: question already {question.status}"
    if intent.amount != question.price_cents or intent.currency != question.currency:
        log.error("payment %s amount %s %s does not match question %s", intent.id,
                  intent.amount, intent.currency, question.id)
        return "ignored: amount does not match the question"
    try:
        questions.confirm_payment(session, question, intent.id)
    except questions.InvalidTransition:
        return f"ignored: question already {question.status}"  # applied by a concurrent request
    return "applied: question queued"


def _payment_failed(session: Session, intent: PaymentIntent) -> str:
    question = _question_for(session, intent)
    if question is None:
        return "ignored: no question for this payment"
    if question.status != "awaiting_payment" or question.payment_intent_id != intent.id:
        return "ignored: not the question's current payment"
    record_payment_failure(session, question, intent.failure_message or DEFAULT_FAILURE)
    return "applied: failure recorded"


def record_payment_failure(session: Session, question: Question, message: str) -> None:
    """The question's current payment failed: keep Stripe's reason for the pay page and, the
    first time this payment's failure is recorded (the test card's answer and its webhook
    both report it), tell the asker (``payment_failed``)."""
    if question.payment_error is None:
        notifications.enqueue(session, question.asker, "payment_failed", {
            "question_id": question.id, "title": question.title,
            "amount_cents": question.price_cents, "currency": question.currency})
    question.payment_error = message
    session.flush()


#: Event type -> what applies it. Connect events arrive at their own endpoint but are stored
#: and applied the same way.
_HANDLERS = {
    "payment_intent.succeeded": lambda s, e: _payment_succeeded(s, e.payment_intent()),
    "payment_intent.payment_failed": lambda s, e: _payment_failed(s, e.payment_intent()),
    "account.updated": connect.account_updated,
    **stripe_money.HANDLERS,
}
