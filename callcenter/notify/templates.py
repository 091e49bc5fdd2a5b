"""
Message text from templates: one Jinja2 file per event, channel and
language in the templates directory (C{etc/notify/templates}:
C{fill.sms.zh.j2}, C{alert.email.en.j2}...), so that a broker rewords a
message without touching code.  An e-mail template's first line is the
subject.  The webhook's body is the event's fields as JSON, not a template.

Texts are kept within each channel's limits here, where the words are
known: an SMS within a number of segments, a page within what a pager
shows.
"""

import json
import os

import jinja2

from callcenter.notify.smpp.text import decode_text, segment_text
from callcenter.notify.subscriptions import EVENTS, LANGUAGES

TEMPLATED_CHANNELS = ("sms", "pager", "email")
ELLIPSIS = "…"


class TemplateError(ValueError):
    """A template is missing or does not compile; the text names which."""


class Renderer:
    """
    @param directory: where the templates are.
    @param channels: the channels in use; their templates must all exist,
        checked at start so that a missing one is a configuration error
        rather than a lost message at the first fill.  The others' are
        loaded if present: messages for a channel not in use yet are
        stored and wait for it.
    """

    def __init__(self, directory, channels, sms_max_segments=3, pager_max_chars=240):
        self._environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(directory),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=False,
        )
        self.sms_max_segments = sms_max_segments
        self.pager_max_chars = pager_max_chars
        self._templates = {}
        problems = []
        for channel in TEMPLATED_CHANNELS:
            for event in EVENTS:
                for language in LANGUAGES:
                    name = f"{event}.{channel}.{language}.j2"
                    try:
                        self._templates[event, channel, language] = self._environment.get_template(name)
                    except jinja2.TemplateNotFound:
                        # Needed only for the channels in use.
                        if channel in channels:
                            problems.append(f"{os.path.join(directory, name)} is missing")
                    except jinja2.TemplateSyntaxError as e:
                        problems.append(f"{os.path.join(directory, name)} line {e.lineno}: {e.message}")
        if problems:
            raise TemplateError("; ".join(problems))

    def render(self, event, channel, language, context):
        """
        @return: (subject, body) for the channel.
        @raise TemplateError: the template names a field the event lacks.
        """
        if channel == "webhook":
            return "", json.dumps({"event": event, **context}, ensure_ascii=False, separators=(",", ":"))
        template = self._templates.get((event, channel, language))
        if template is None:
            raise TemplateError(f"no template {event}.{channel}.{language}.j2")
        try:
            # The context as the template's only namespace (shared): what
            # render() does, without merging in the environment's globals
            # per message, a third of the cost in a burst of alerts.
            text = "".join(template.root_render_func(template.new_context(context, shared=True))).strip()
        except jinja2.UndefinedError as e:
            raise TemplateError(f"{event}.{channel}.{language}.j2: {e.message}") from None
        if channel == "email":
            subject, _, body = text.partition("\n")
            return " ".join(subject.split()), body.strip() + "\n"
        text = " ".join(text.split())
        if channel == "sms":
            return "", fit_sms(text, self.sms_max_segments)
        return "", _cut(text, self.pager_max_chars)


def _cut(text, limit):
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def fit_sms(text, max_segments):
    """
    C{text}, or as much of it as fits C{max_segments} segments with an
    ellipsis, counted as the SMPP sender will encode it (GSM 03.38 septets
    or UCS2) so that what is stored is what the investor reads.
    """
    data_coding, segments, truncated = segment_text(text, max_segments)
    return decode_text(data_coding, b"".join(segments)) if truncated else text
