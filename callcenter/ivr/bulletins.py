"""
The voice information service's data (自动声讯: recorded bulletins by
category) and the expert mailboxes' (名家股评信箱: experts' recorded
commentaries), and the PIN check of the editors and experts who record them.

The functions taking a C{connection} are blocking: run them in
L{callcenter.interfaces.IStore.transaction}.  L{Credentials} does the PIN
check around them, verifying the argon2 hash in a thread and outside any
transaction, so a slow hash never holds a write lock.

Times are stored in UTC: SQLite keeps no time zone, so an aware time in
another zone would compare wrongly there; what is read back is made aware
again (L{_aware}).

Recordings live under the configured directory (C{[ivr] recordings}) at
paths L{new_recording} makes from the kind, the date and a random name, so
nothing a caller keys ever reaches the file system.  The rows hold the path
relative to that directory.
"""

import datetime
import enum
import os
import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from twisted.internet import defer

from callcenter.media.wavfile import FRAME_BYTES, PromptError, _read_wav
from callcenter.passwords import verify_password
from callcenter.store.schema import bulletin_categories, bulletins, commentaries, editors, experts
from callcenter.store.schema import editor_categories as allowed_categories

__all__ = [
    "MAX_PIN_ATTEMPTS",
    "Bulletin",
    "Category",
    "Commentary",
    "Credentials",
    "Expert",
    "PinCheck",
    "add_bulletin",
    "add_category",
    "add_commentary",
    "add_editor",
    "add_expert",
    "allow_categories",
    "bulletin",
    "categories",
    "current_bulletins",
    "delete_commentary",
    "editor_categories",
    "expire_bulletin",
    "expert",
    "expert_commentaries",
    "new_recording",
    "publish_commentary",
    "published_commentaries",
    "recording_duration_ms",
    "revoke_categories",
    "unexpired_bulletins",
    "unlock",
]

MAX_PIN_ATTEMPTS = 5
CATEGORY_KEYS = "12345678"


@dataclass(frozen=True)
class Category:
    code: str
    name_zh: str
    name_en: str


@dataclass(frozen=True)
class Bulletin:
    id: int
    category: str
    title: str | None
    audio_path: str
    duration_ms: int
    recorded_by: str | None
    publish_at: datetime.datetime
    expire_at: datetime.datetime | None


@dataclass(frozen=True)
class Expert:
    expert_no: str
    name_zh: str
    name_en: str


@dataclass(frozen=True)
class Commentary:
    id: int
    expert_no: str
    audio_path: str
    duration_ms: int
    status: str
    published_at: datetime.datetime | None


def _utc(moment):
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise ValueError("bulletin and commentary times must be aware datetimes")
    return moment.astimezone(datetime.timezone.utc)


def _aware(moment):
    """A time read back: SQLite gives it without its zone, which is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=datetime.timezone.utc)


# -- recordings on disk


def new_recording(directory, kind, now):
    """
    A new, unused path for a recording of C{kind} ("bulletins" or
    "commentaries"): C{(relative, absolute)}, its folder created.
    """
    day = _utc(now).strftime("%Y%m%d")
    relative = os.path.join(kind, day, f"{uuid.uuid4().hex}.wav")
    absolute = os.path.join(directory, relative)
    os.makedirs(os.path.dirname(absolute), exist_ok=True)
    return relative, absolute


def recording_duration_ms(path):
    """How long the G.711 or 16-bit PCM recording at C{path} lasts; 0 if it holds no audio."""
    try:
        tag, data = _read_wav(path)
    except PromptError:
        return 0
    samples = len(data) // 2 if tag == 1 else len(data)
    return samples * 20 // FRAME_BYTES


# -- categories and bulletins


def add_category(connection, code, name_zh, name_en, sort=None):
    """Add a category, or rename one; its key is C{code}, one digit 1 to 8."""
    if len(code) != 1 or code not in CATEGORY_KEYS:
        raise ValueError(f"a category code is one digit from 1 to 8, not {code!r}")
    values = {"name_zh": name_zh, "name_en": name_en, "sort": int(code) if sort is None else sort}
    updated = connection.execute(
        bulletin_categories.update().where(bulletin_categories.c.code == code).values(**values)
    ).rowcount
    if not updated:
        connection.execute(bulletin_categories.insert().values(code=code, **values))


def categories(connection):
    """Every category, in menu order."""
    rows = connection.execute(
        sa.select(bulletin_categories.c.code, bulletin_categories.c.name_zh, bulletin_categories.c.name_en)
        .order_by(bulletin_categories.c.sort, bulletin_categories.c.code)
    )
    return [Category(*row) for row in rows]


def add_bulletin(connection, category, audio_path, duration_ms, publish_at, recorded_by=None, expire_at=None,
                 title=None):
    """Add a bulletin, heard from C{publish_at} until C{expire_at}; returns its id."""
    if expire_at is not None and expire_at <= publish_at:
        raise ValueError("a bulletin must expire after it is published")
    return connection.execute(
        bulletins.insert().values(
            category=category,
            title=title,
            audio_path=audio_path,
            duration_ms=duration_ms,
            recorded_by=recorded_by,
            publish_at=_utc(publish_at),
            expire_at=_utc(expire_at),
        )
    ).inserted_primary_key[0]


_BULLETIN = (
    bulletins.c.id, bulletins.c.category, bulletins.c.title, bulletins.c.audio_path, bulletins.c.duration_ms,
    bulletins.c.recorded_by, bulletins.c.publish_at, bulletins.c.expire_at,
)


def _bulletin(row):
    return Bulletin(row.id, row.category, row.title, row.audio_path, row.duration_ms, row.recorded_by,
                    _aware(row.publish_at), _aware(row.expire_at))


def current_bulletins(connection, category, now):
    """The bulletins of C{category} published and not expired at C{now}, newest first."""
    now = _utc(now)
    rows = connection.execute(
        sa.select(*_BULLETIN)
        .where(
            bulletins.c.category == category,
            bulletins.c.publish_at <= now,
            sa.or_(bulletins.c.expire_at.is_(None), bulletins.c.expire_at > now),
        )
        .order_by(bulletins.c.publish_at.desc(), bulletins.c.id.desc())
    )
    return [_bulletin(row) for row in rows]


def unexpired_bulletins(connection, now):
    """
    The bulletins of every category not expired at C{now}, those heard now
    and those to be published later (less those withdrawn before: see
    L{expire_bulletin}): by category, newest publication first.
    """
    now = _utc(now)
    rows = connection.execute(
        sa.select(*_BULLETIN)
        .where(sa.or_(
            bulletins.c.expire_at.is_(None),
            sa.and_(bulletins.c.expire_at > now, bulletins.c.expire_at > bulletins.c.publish_at),
        ))
        .order_by(bulletins.c.category, bulletins.c.publish_at.desc(), bulletins.c.id.desc())
    )
    return [_bulletin(row) for row in rows]


def bulletin(connection, bulletin_id):
    """The bulletin C{bulletin_id}, expired or not, or None."""
    row = connection.execute(sa.select(*_BULLETIN).where(bulletins.c.id == bulletin_id)).first()
    return None if row is None else _bulletin(row)


def expire_bulletin(connection, bulletin_id, now):
    """
    Take the bulletin off the air at C{now}; one not yet published expires
    when it was to be published, so that nobody ever hears it.  The row
    and the recording stay: what investors heard, and when, is kept.
    Returns the bulletin as it is now, or None if there is no such bulletin.
    """
    found = bulletin(connection, bulletin_id)
    if found is None:
        return None
    now = _utc(now)
    if found.expire_at is not None and found.expire_at <= now:
        return found
    expire_at = max(found.publish_at, now)
    connection.execute(bulletins.update().where(bulletins.c.id == bulletin_id).values(expire_at=expire_at))
    return bulletin(connection, bulletin_id)


# -- editors, experts and their PINs


def add_editor(connection, editor_id, name, pin_hash, category_codes=None):
    """
    Add an editor who may publish in the categories C{category_codes}, or
    in every category there is now if None.  Returns the codes of the
    categories they may publish in.
    """
    _check_number(editor_id, editors.c.editor_id, "an editor id")
    connection.execute(editors.insert().values(editor_id=editor_id, name=name, pin_hash=pin_hash))
    if category_codes is None:
        category_codes = [category.code for category in categories(connection)]
    return allow_categories(connection, editor_id, category_codes)


def editor_categories(connection, editor_id):
    """
    The codes of the categories C{editor_id} may publish in (by phone or
    over HTTP) and withdraw bulletins from, in menu order.  A category
    added later is allowed to nobody until allowed (L{allow_categories}).
    """
    return list(connection.scalars(
        sa.select(bulletin_categories.c.code)
        .join(allowed_categories, allowed_categories.c.category == bulletin_categories.c.code)
        .where(allowed_categories.c.editor_id == editor_id)
        .order_by(bulletin_categories.c.sort, bulletin_categories.c.code)
    ))


def _editor_and_categories(connection, editor_id, codes):
    """Refuse with a ValueError an editor or a category code that does not exist."""
    if connection.execute(sa.select(editors.c.editor_id).where(editors.c.editor_id == editor_id)).first() is None:
        raise ValueError(f"there is no editor {editor_id}")
    unknown = set(codes) - {category.code for category in categories(connection)}
    if unknown:
        raise ValueError(f"there is no bulletin category {', '.join(sorted(unknown))}")


def allow_categories(connection, editor_id, codes):
    """
    Let the editor publish in the categories C{codes} too; returns the
    codes they may publish in now.  An unknown editor or code is a
    ValueError, and nothing changes.
    """
    _editor_and_categories(connection, editor_id, codes)
    already = set(editor_categories(connection, editor_id))
    added = [code for code in dict.fromkeys(codes) if code not in already]
    if added:
        connection.execute(allowed_categories.insert(), [{"editor_id": editor_id, "category": code} for code in added])
    return editor_categories(connection, editor_id)


def revoke_categories(connection, editor_id, codes):
    """
    No longer let the editor publish in (nor withdraw from) the categories
    C{codes}; what they published stays on the air.  Returns the codes they
    may still publish in; an unknown editor or code is a ValueError.
    """
    _editor_and_categories(connection, editor_id, codes)
    connection.execute(
        allowed_categories.delete().where(
            allowed_categories.c.editor_id == editor_id, allowed_categories.c.category.in_(list(codes))
        )
    )
    return editor_categories(connection, editor_id)


def add_expert(connection, expert_no, name_zh, name_en, pin_hash):
    _check_number(expert_no, experts.c.expert_no, "an expert number")
    connection.execute(
        experts.insert().values(expert_no=expert_no, name_zh=name_zh, name_en=name_en, pin_hash=pin_hash)
    )


def _check_number(value, column, what):
    # Keyed on a phone: digits only, and short enough for the column.
    if not value.isdigit() or not value.isascii() or len(value) > column.type.length:
        raise ValueError(f"{what} is 1 to {column.type.length} digits, not {value!r}")


def expert(connection, expert_no):
    """The expert whose mailbox is C{expert_no}, or None."""
    row = connection.execute(
        sa.select(experts.c.expert_no, experts.c.name_zh, experts.c.name_en).where(experts.c.expert_no == expert_no)
    ).first()
    return None if row is None else Expert(*row)


class PinCheck(enum.Enum):
    OK = "ok"
    # Also for an unknown id: a caller must not learn which ids exist.
    WRONG = "wrong"
    LOCKED = "locked"


_PEOPLE = {
    "editor": (editors, editors.c.editor_id),
    "expert": (experts, experts.c.expert_no),
}


def _pin_row(connection, kind, key):
    table, column = _PEOPLE[kind]
    return connection.execute(sa.select(table.c.pin_hash, table.c.locked_at).where(column == key)).first()


def _pin_failed(connection, kind, key, max_attempts, now):
    """Count a wrong PIN; lock at C{max_attempts}.  True if now locked."""
    table, column = _PEOPLE[kind]
    connection.execute(table.update().where(column == key).values(failed_attempts=table.c.failed_attempts + 1))
    failed = connection.execute(sa.select(table.c.failed_attempts).where(column == key)).scalar()
    if failed >= max_attempts:
        connection.execute(
            table.update().where(column == key, table.c.locked_at.is_(None)).values(locked_at=_utc(now))
        )
        return True
    return False


def _pin_succeeded(connection, kind, key):
    table, column = _PEOPLE[kind]
    connection.execute(table.update().where(column == key).values(failed_attempts=0))


def unlock(connection, kind, key):
    """Clear the failed attempts and the lock; False if there is no such person."""
    table, column = _PEOPLE[kind]
    return bool(
        connection.execute(table.update().where(column == key).values(failed_attempts=0, locked_at=None)).rowcount
    )


class Credentials:
    """
    Checks editors' and experts' PINs: read in one transaction, argon2
    verified by C{in_thread(function, *args)} (a Deferred; a thread pool's
    in production, since a hash takes tens of milliseconds), the outcome
    written in a second transaction; C{max_attempts} wrong PINs in a row
    lock the id until an administrator unlocks it.

    @param now: a callable giving the current aware datetime.
    """

    def __init__(self, store, in_thread, now, max_attempts=MAX_PIN_ATTEMPTS):
        self._store = store
        self._in_thread = in_thread
        self._now = now
        self.max_attempts = max_attempts

    @defer.inlineCallbacks
    def check(self, kind, key, pin):
        """Fires with a L{PinCheck}; C{kind} is "editor" or "expert"."""
        row = yield self._store.transaction(_pin_row, kind, key)
        if row is None:
            return PinCheck.WRONG
        if row.locked_at is not None:
            return PinCheck.LOCKED
        good = yield self._in_thread(verify_password, row.pin_hash, pin)
        if good:
            yield self._store.transaction(_pin_succeeded, kind, key)
            return PinCheck.OK
        locked = yield self._store.transaction(_pin_failed, kind, key, self.max_attempts, self._now())
        return PinCheck.LOCKED if locked else PinCheck.WRONG


# -- commentaries


def _commentary(row):
    return Commentary(row.id, row.expert_no, row.audio_path, row.duration_ms, row.status, _aware(row.published_at))


_COMMENTARY = (
    commentaries.c.id, commentaries.c.expert_no, commentaries.c.audio_path, commentaries.c.duration_ms,
    commentaries.c.status, commentaries.c.published_at,
)


def add_commentary(connection, expert_no, audio_path, duration_ms):
    """Keep a recording as a draft, which investors do not hear; returns its id."""
    return connection.execute(
        commentaries.insert().values(
            expert_no=expert_no, audio_path=audio_path, duration_ms=duration_ms, status="draft"
        )
    ).inserted_primary_key[0]


def publish_commentary(connection, commentary_id, expert_no, now):
    """Publish the expert's own draft; False if there is no such draft."""
    return bool(
        connection.execute(
            commentaries.update()
            .where(
                commentaries.c.id == commentary_id,
                commentaries.c.expert_no == expert_no,
                commentaries.c.status == "draft",
            )
            .values(status="published", published_at=_utc(now))
        ).rowcount
    )


def delete_commentary(connection, commentary_id, expert_no):
    """
    Mark the expert's own commentary deleted; returns its audio path, for
    the caller to remove once this has committed, or None if it has none.
    """
    row = connection.execute(
        sa.select(commentaries.c.audio_path).where(
            commentaries.c.id == commentary_id,
            commentaries.c.expert_no == expert_no,
            commentaries.c.status != "deleted",
        )
    ).first()
    if row is None:
        return None
    connection.execute(commentaries.update().where(commentaries.c.id == commentary_id).values(status="deleted"))
    return row.audio_path


def published_commentaries(connection, expert_no):
    """What investors hear in the expert's mailbox: published, newest first."""
    rows = connection.execute(
        sa.select(*_COMMENTARY)
        .where(commentaries.c.expert_no == expert_no, commentaries.c.status == "published")
        .order_by(commentaries.c.published_at.desc(), commentaries.c.id.desc())
    )
    return [_commentary(row) for row in rows]


def expert_commentaries(connection, expert_no):
    """What the expert reviews: drafts and published ones, newest recording first."""
    rows = connection.execute(
        sa.select(*_COMMENTARY)
        .where(commentaries.c.expert_no == expert_no, commentaries.c.status != "deleted")
        .order_by(commentaries.c.id.desc())
    )
    return [_commentary(row) for row in rows]
