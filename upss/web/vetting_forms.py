"""Forms of the vetting pages (application to answer, organizer decisions)."""

from __future__ import annotations

from datetime import date

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from wtforms import (
    DateField,
    IntegerField,
    RadioField,
    SelectMultipleField,
    StringField,
    TextAreaField,
    widgets,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Length, NumberRange, ValidationError

from .. import money, settings
from ..models import LANGUAGE_NAMES
from .display import TOPIC_NAMES
from .inputs import Form, strip_whitespace


class MultiCheckboxField(SelectMultipleField):
    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()


class ApplicationForm(Form):
    basis = RadioField(_l("Why can you answer for UPSS?"), choices=[
        SelectChoice("age", _l("I am 65 or over")),
        SelectChoice("disability", _l("I live with a disability")),
        SelectChoice("both", _l("Both"))],
        validators=[InputRequired(_l("Choose why you can answer for UPSS"))])
    birth_year = StringField(_l("Year of birth"), filters=[strip_whitespace])
    languages = MultiCheckboxField(_l("Languages you can answer in"),
                                   choices=[SelectChoice(k, v) for k, v in LANGUAGE_NAMES.items()],
                                   validators=[InputRequired(_l("Choose at least one language"))])
    topics = MultiCheckboxField(_l("Topics you know well (optional)"),
                                choices=[SelectChoice(k, v) for k, v in TOPIC_NAMES.items()])
    available_hours = StringField(_l("Hours when questions may be offered to you"),
                                  filters=[strip_whitespace])
    daily_limit = IntegerField(_l("Most questions a day"), default=3, validators=[
        InputRequired(_l("Enter how many questions a day you would like at most")),
        NumberRange(min=1, max=50, message=_l("Enter a number from 1 to 50"))])
    yearly_ceiling = StringField(_l("Most you may earn in a year (optional)"),
                                 filters=[strip_whitespace])
    payout_method = RadioField(_l("How should we pay you?"), choices=[
        SelectChoice("sepa", _l("Bank transfer to my account (IBAN)")),
        SelectChoice("connect", _l("Stripe (we will send you a link to set it up)"))],
        default="sepa", validators=[InputRequired(_l("Choose how we should pay you"))])
    iban = StringField(_l("IBAN"), filters=[strip_whitespace])
    account_holder = StringField(_l("Name of the account holder"), filters=[strip_whitespace],
                                 validators=[Length(max=70)])

    def __init__(self, currency: str, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.currency = currency
        self.hours = (0, 1440)
        self.ceiling_cents: int | None = None

    def validate_birth_year(self, field):
        if not field.data:
            if self.basis.data in ("age", "both"):
                raise ValidationError(_("Enter your year of birth"))
            field.data = None
            return
        if not (field.data.isdigit() and len(field.data) == 4):
            raise ValidationError(_("Enter a year like 1952"))
        field.data = int(field.data)

    def validate_available_hours(self, field):
        if not field.data:
            self.hours = (0, 1440)
            return
        try:
            self.hours = settings.parse_window(field.data)
        except ValueError:
            raise ValidationError(_("Write the hours like 08:00-20:00, or leave it empty for "
                                    "any time")) from None

    def validate_yearly_ceiling(self, field):
        if not field.data:
            return
        try:
            self.ceiling_cents = money.parse_amount(field.data, self.currency)
        except money.AmountTooLarge:
            raise ValidationError(_("That amount is too large")) from None
        except ValueError:
            raise ValidationError(_("Enter the amount as a number, like 5000")) from None
        if self.ceiling_cents <= 0:
            raise ValidationError(_("Enter an amount above zero, or leave it empty"))

    def validate_iban(self, field):
        from ..sepa import InvalidIBAN, validate_iban
        if self.payout_method.data != "sepa":
            return
        if not field.data:
            raise ValidationError(_("Enter your IBAN"))
        try:
            field.data = validate_iban(field.data)
        except InvalidIBAN:
            raise ValidationError(_("Enter a valid IBAN, like NO93 8601 1117 947")) from None

    def validate_account_holder(self, field):
        if self.payout_method.data == "sepa" and not field.data:
            raise ValidationError(_("Enter the name of the account holder"))


class ApproveForm(Form):
    method = StringField(_l("How did you verify the eligibility?"), filters=[strip_whitespace],
                         validators=[InputRequired(_l("Say how you verified the eligibility")),
                                     Length(max=200)])
    verified_on = DateField(_l("Date of the check"), default=date.today, validators=[
        InputRequired(_l("Enter the date of the check as YYYY-MM-DD"))])
    note = TextAreaField(_l("Note (optional)"), filters=[strip_whitespace],
                         validators=[Length(max=2000)])


class RejectApplicationForm(Form):
    reason = TextAreaField(
        _l("Reason, shown to the applicant"), filters=[strip_whitespace], validators=[
            InputRequired(_l("Give a reason")), Length(max=2000)])
