"""
Recordings nobody will ever hear: a bulletin's or commentary's file whose
row never came (the server killed between the file's rename and the row's
insert, in an HTTP upload or a phone recording), a commentary's file
still there after the commentary was deleted (killed between the commit
and the removal), and the C{.part} an upload left half-written.

L{sweep_orphans} removes them when the IVR service starts.  Only files
older than L{MINIMUM_AGE_SECONDS} are touched: an upload or a recording in
progress writes its file seconds before its row, never an hour.
"""

import os

import sqlalchemy as sa
from twisted.internet import defer
from twisted.logger import Logger

from callcenter.store.schema import bulletins, commentaries

__all__ = ["KINDS", "MINIMUM_AGE_SECONDS", "referenced_recordings", "sweep_orphans"]

# The folders under the recordings directory that hold what rows refer to
# (L{callcenter.ivr.bulletins.new_recording}).
KINDS = ("bulletins", "commentaries")
MINIMUM_AGE_SECONDS = 3600
_PARTIAL = ".part"

_log = Logger()


def referenced_recordings(connection):
    """
    The paths (relative to the recordings directory, normalised) of the
    recordings rows refer to; a deleted commentary's file is not one.
    """
    paths = connection.scalars(
        sa.union_all(
            sa.select(bulletins.c.audio_path),
            sa.select(commentaries.c.audio_path).where(commentaries.c.status != "deleted"),
        )
    )
    return {os.path.normpath(path) for path in paths}


def _old_files(directory, older_than):
    """The files under C{directory}'s L{KINDS} last changed before C{older_than}, relative to it."""
    found = []
    for kind in KINDS:
        for folder, _, names in os.walk(os.path.join(directory, kind)):
            for name in names:
                path = os.path.join(folder, name)
                try:
                    changed = os.lstat(path).st_mtime
                except FileNotFoundError:
                    continue
                if changed < older_than:
                    found.append(os.path.relpath(path, directory))
    return found


def _remove_all(directory, relatives):
    """Remove the files; those removed (another process may have been first)."""
    removed = []
    for relative in relatives:
        try:
            os.remove(os.path.join(directory, relative))
        except FileNotFoundError:
            continue
        removed.append(relative)
    return removed


@defer.inlineCallbacks
def sweep_orphans(store, in_thread, directory, now, minimum_age=MINIMUM_AGE_SECONDS):
    """
    Remove the orphan recordings under C{directory} last changed more than
    C{minimum_age} seconds before C{now} (seconds since the epoch, as file
    times are), logging each.  The disk is read and written by
    C{in_thread(function, *args)} (a Deferred), the rows read in one
    transaction of C{store} (an L{IStore}), so that neither the reactor nor
    a database connection waits on the disk.

    A directory with old recordings and a database with none is taken for
    a configuration mistake (a new database, the old directory): nothing
    but C{.part} files is removed then.

    @return: a Deferred firing with the relative paths removed.
    """
    old = yield in_thread(_old_files, directory, now - minimum_age)
    if not old:
        return []
    referenced = yield store.transaction(referenced_recordings)
    partial = [path for path in old if path.endswith(_PARTIAL)]
    recordings = [path for path in old if not path.endswith(_PARTIAL)]
    if recordings and not referenced:
        _log.warn(
            "{count} recordings under {directory} and none in the database: is it the directory of another "
            "database? Not removing them",
            count=len(recordings), directory=directory,
        )
        recordings = []
    orphans = partial + [path for path in recordings if os.path.normpath(path) not in referenced]
    removed = yield in_thread(_remove_all, directory, orphans)
    for path in removed:
        why = "half-written" if path.endswith(_PARTIAL) else "no row refers to it"
        _log.info("removed {path} under {directory}: {why}", path=path, directory=directory, why=why)
    return removed
