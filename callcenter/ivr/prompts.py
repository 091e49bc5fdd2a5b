"""
The IVR's prompt packs: what the IVR says, as data, and the 8 kHz WAV files
made from it at install time.

L{PHRASES} holds the fixed phrases of phone trading, the voice information
service and the expert mailboxes, in Mandarin (C{zh/...}, the default) and
English (C{en/...}); L{callcenter.ivr.say.VOCABULARY} adds the words that
numbers, money and dates are built from, and the instrument master
(C{etc/instruments.csv}, when the build is given it) each stock's name,
C{zh/stock-name-<code>} and C{en/stock-name-<code>}
(L{callcenter.ivr.stock_names}).  L{build_pack} makes one WAV per
prompt under C{DIR/<lang>/<slug>.wav} (8 kHz mono 16-bit PCM, which
L{callcenter.media.wavfile.load_prompt} turns into PCMU or PCMA frames) and
lists them in C{DIR/manifest.json}; L{resolve} gives a prompt's file.

Synthesis is espeak-ng's, then L{callcenter.ivr.telephone_audio}'s:
espeak-ng writes 22,050 Hz only (it has no option for the rate, and MBROLA
voices, the only others, are 16 kHz), so the speech is resampled to 8 kHz,
trimmed and levelled there, so that prompts played one after the other
sound as one voice at one level.

What the synthesiser is given is the text made speakable: Mandarin words
espeak-ng misreads in pinyin (L{callcenter.ivr.pronunciation}), and for
stock names the choices of L{callcenter.ivr.stock_names.spoken} ("*ST" said
"星ST", letters spelled).  The manifest records it as C{"spoken"} where it
differs from the C{"text"}.

The pack is a cache: a prompt whose text, spoken text, voice, engine version
and processing are those the manifest records, and whose file is unchanged,
is not synthesised again.

Stock names are built only from an instruments file: a build without one
leaves the stock names already in the pack as they are (neither checked nor
removed), so that building the fixed phrases alone (C{callcenter prompts
build} by hand) cannot wipe them out; a build with one makes what changed
and removes the names of instruments no longer in the file.

Studio recordings replace prompts file by file through the studio
directory, C{DIR/studio/<lang>/<slug>.wav}: a build validates the
recording (8 kHz mono, 16-bit PCM, mu-law or A-law), copies it over the
synthesised file and marks it C{"studio"} in the manifest; it never writes
in C{studio/}.  Deleting the recording brings the synthesised prompt back at
the next build.  The C{<lang>/} folders are the build's own: a file there
edited by hand is not overwritten but reported, since the edit would be
lost (move it to C{studio/}, or build with C{force}).
"""

import collections
import concurrent.futures
import contextlib
import hashlib
import importlib
import json
import os
import re
import subprocess
from types import MappingProxyType

import attrs

from callcenter.ivr import stock_names
from callcenter.ivr.phrases import PHRASES
from callcenter.ivr.pronunciation import spoken_mandarin
from callcenter.ivr.telephone_audio import (
    SAMPLE_RATE,
    parse_wav,
    pcm_samples,
    telephone_audio,
    wav_bytes,
)
from callcenter.media.wavfile import PromptError, load_prompt

__all__ = [
    "LANGUAGES",
    "BuildReport",
    "Espeak",
    "PromptNotFound",
    "PromptPackError",
    "SynthesisError",
    "build_pack",
    "catalogue",
    "espeak",
    "resolve",
    "spoken",
    "write_atomically",
]

LANGUAGES = ("zh", "en")
MANIFEST = "manifest.json"
STUDIO = "studio"
STUDIO_SOURCE = "studio"
# What a manifest entry's "processing" says: change it when the resampler,
# trimming or level change, and every synthesised prompt is made anew.
PROCESSING = 1


_NAME = re.compile(r"([a-z]{2,3})/([a-z0-9][a-z0-9-]*)\Z")


class PromptPackError(Exception):
    """The pack cannot be built or read; C{problems} are one line each."""

    def __init__(self, problems, report=None):
        if isinstance(problems, str):
            problems = [problems]
        self.problems = list(problems)
        self.report = report
        super().__init__("\n".join(self.problems))


class SynthesisError(PromptPackError):
    """The synthesiser failed on a prompt, or is missing."""


class PromptNotFound(PromptPackError, LookupError):
    """No file for a prompt name."""


# Synthesis.


class Espeak:
    """
    espeak-ng as a synthesiser for L{build_pack}: C{engine} names it and its
    version, C{voice(language)} says how a language is spoken (both go in
    the manifest, so that a change of either remakes the prompts), and
    calling it with a text and a language gives C{(rate, samples)}, 16-bit
    mono.

    Mandarin uses C{cmn-latn-pinyin}, not C{cmn}: espeak-ng 1.51's Mandarin
    dictionary gives most characters as tone-numbered pinyin, which the
    C{cmn} voice then reads as English letters ("tuo1" as "t-u-o one"); the
    pinyin voice reads it as Mandarin.  English is British, like say.py's
    numbers ("one hundred and five") and the "hash key" of the phrases.
    The text goes in on standard input (no shell, nothing on the command
    line that could be taken for an option).
    """

    VOICES = MappingProxyType({"zh": "cmn-latn-pinyin", "en": "en-gb"})
    # espeak-ng's words per minute.  Its default, 175, is about 3.5
    # syllables a second in Mandarin, pauses included: clear on a phone
    # line.  English a little slower than the default, as IVRs speak.
    SPEEDS = MappingProxyType({"zh": 175, "en": 160})

    def __init__(self, executable="espeak-ng", timeout=30.0):
        self.executable = executable
        self.timeout = timeout
        self._engine = None

    def _run(self, arguments, what, stdin=b""):
        try:
            completed = subprocess.run(
                [self.executable, *arguments], input=stdin, capture_output=True, timeout=self.timeout
            )
        except FileNotFoundError:
            raise SynthesisError(
                f"{what}: {self.executable} is not installed (make run and make test install it; "
                "or: .ci/ensure-debian-packages espeak-ng)"
            ) from None
        except OSError as e:
            raise SynthesisError(f"{what}: cannot run {self.executable}: {e.strerror}") from None
        except subprocess.TimeoutExpired:
            raise SynthesisError(f"{what}: {self.executable} did not finish within {self.timeout:g} s") from None
        stderr = " ".join(completed.stderr.decode("utf-8", "replace").split())
        if completed.returncode:
            raise SynthesisError(
                f"{what}: {self.executable} exited with status {completed.returncode}: {stderr or 'no message'}"
            )
        return completed.stdout, stderr

    @property
    def engine(self):
        """C{"espeak-ng 1.51"}: the version the prompts are made with."""
        if self._engine is None:
            out, _ = self._run(["--version"], "espeak-ng version")
            match = re.search(rb"text-to-speech: (\S+)", out)
            if match is None:
                raise SynthesisError(f"espeak-ng version: cannot read it in {out[:200]!r}")
            self._engine = f"espeak-ng {match.group(1).decode('ascii', 'replace')}"
        return self._engine

    def voice(self, language):
        return f"{self.VOICES[language]} -s {self.SPEEDS[language]}"

    def __call__(self, text, language):
        out, stderr = self._run(
            ["-v", self.VOICES[language], "-s", str(self.SPEEDS[language]), "-b", "1", "-z", "--stdout", "--stdin"],
            f"{language} {text!r}",
            stdin=text.encode("utf-8"),
        )
        try:
            tag, channels, rate, bits, data = parse_wav(out)
        except ValueError as e:
            raise SynthesisError(
                f"{language} {text!r}: espeak-ng wrote no usable WAV ({e}): {stderr or 'no message'}"
            ) from None
        if (tag, channels, bits) != (1, 1, 16):
            raise SynthesisError(f"{language} {text!r}: espeak-ng wrote format {tag}, {channels} channels, {bits} bits")
        return rate, pcm_samples(data)


espeak = Espeak()


# The catalogue.


def _split(name):
    match = _NAME.match(name)
    if match is None:
        raise PromptPackError(f"prompt name {name!r} is not LANG/SLUG (lower-case letters, digits, hyphens)")
    return match.groups()


def _vocabulary():
    """say.py's VOCABULARY, or None while that module does not exist."""
    try:
        say = importlib.import_module("callcenter.ivr.say")
    except ModuleNotFoundError as e:
        if e.name != "callcenter.ivr.say":
            raise
        return None
    return say.VOCABULARY


def catalogue(languages=LANGUAGES, instruments=None):
    """
    Every prompt name of C{languages} with its text: L{PHRASES}, say.py's
    VOCABULARY and, given the path of an C{instruments} file, the stock
    names.  The same name with two texts is an error.
    """
    vocabulary = _vocabulary() or {}
    sources = [("PHRASES", PHRASES), ("say.py's VOCABULARY", vocabulary)]
    if instruments is not None:
        try:
            sources.append((instruments, stock_names.read_names(instruments)))
        except stock_names.StockNamesError as e:
            raise PromptPackError(e.problems) from None
    texts, origins, problems = {}, {}, []
    for origin, source in sources:
        for name, text in source.items():
            language, _ = _split(name)
            if language not in languages:
                continue
            if texts.get(name, text) != text:
                problems.append(f"prompt {name}: {texts[name]!r} in {origins[name]}, {text!r} in {origin}")
            texts[name] = text
            origins[name] = origin
    if problems:
        raise PromptPackError(problems)
    return texts


def spoken(name, text):
    """What the synthesiser is given for prompt C{name} whose text is C{text}."""
    language, slug = _split(name)
    if stock_names.is_stock_name(slug):
        return stock_names.spoken(text, language)
    if language == "zh":
        return spoken_mandarin(text)
    return text


# The pack.


@attrs.define
class BuildReport:
    """What L{build_pack} did, by prompt name."""

    made: list = attrs.Factory(list)
    reused: list = attrs.Factory(list)
    studio: list = attrs.Factory(list)
    # Studio recordings kept although the phrase has changed since.
    studio_outdated: list = attrs.Factory(list)
    removed: list = attrs.Factory(list)
    # One line each: studio recordings no prompt has, say.py missing ...
    warnings: list = attrs.Factory(list)
    languages: dict = attrs.Factory(dict)  # language -> number of prompts


def _sha256(path):
    try:
        with open(path, "rb") as file:
            return hashlib.sha256(file.read()).hexdigest()
    except FileNotFoundError:
        return None


def write_atomically(path, data):
    """A reader (or a killed build) sees the old file or the new, never half of one."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}.tmp{os.getpid()}"
    with open(temporary, "wb") as file:
        file.write(data)
    os.replace(temporary, path)


def _read_manifest(directory):
    path = os.path.join(directory, MANIFEST)
    try:
        with open(path, encoding="utf-8") as file:
            document = json.load(file)
        return {entry["name"]: entry for entry in document["prompts"]}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError) as e:
        # Without it we cannot tell our files from files edited by hand.
        raise PromptPackError(
            f"{path}: unreadable ({e}); delete it and build with --force to make every prompt anew"
        ) from None


def _write_manifest(directory, entries):
    document = {
        "format": 1,
        "sample_rate": SAMPLE_RATE,
        "prompts": [entries[name] for name in sorted(entries)],
    }
    text = json.dumps(document, ensure_ascii=False, indent=1) + "\n"
    write_atomically(os.path.join(directory, MANIFEST), text.encode("utf-8"))


def _studio_entry(name, text, relative, studio_relative, path):
    """The manifest entry of a studio recording, or a PromptError saying why it cannot be played."""
    load_prompt(path, "PCMU")
    with open(path, "rb") as file:
        data = file.read()
    tag, channels, rate, bits, payload = parse_wav(data)
    samples = len(payload) // (bits // 8) // channels
    return {
        "name": name,
        "language": _split(name)[0],
        "text": text,
        "file": relative,
        "duration_ms": round(samples * 1000 / rate),
        "sha256": hashlib.sha256(data).hexdigest(),
        "source": STUDIO_SOURCE,
        "studio_file": studio_relative,
    }


def build_pack(
    directory, languages=LANGUAGES, names=None, synthesise=None, force=False, workers=None, instruments=None
):
    """
    Make the prompts of C{languages} (all, or only those in C{names}: full
    names like C{"zh/welcome"}, or slugs like C{"welcome"} for every
    language) under C{directory}, reusing what is up to date, and return a
    L{BuildReport}.  With C{instruments}, the path of a file like
    C{etc/instruments.csv}, the stock names are among the prompts; without
    it, those already in the pack are left alone.

    C{synthesise(text, language)} (L{espeak} by default) returns
    C{(rate, samples)} of 16-bit mono speech; its C{engine}
    (C{"espeak-ng 1.51"}) and C{voice(language)} are recorded with each
    prompt.  C{force} makes every synthesised prompt anew, and overwrites
    files edited by hand; studio recordings are kept whatever happens.
    Synthesis, resampling and levelling run in C{workers} processes (one per
    CPU by default; 1: in this process, the only way for a C{synthesise}
    that cannot be pickled).

    Raises L{SynthesisError} at the first prompt the synthesiser fails on,
    and L{PromptPackError} listing every studio recording that cannot be
    played and every hand-edited file, after building all the others; the
    manifest is written in either case, so the prompts already made are not
    made again.
    """
    if synthesise is None:
        synthesise = espeak
    for language in languages:
        if language not in LANGUAGES:
            raise PromptPackError(f"language {language!r}: prompts exist for {', '.join(LANGUAGES)}")
    texts = _selected(catalogue(languages, instruments), languages, names)
    report = BuildReport()
    if _vocabulary() is None:
        report.warnings.append("callcenter/ivr/say.py does not exist yet: its VOCABULARY is not in the pack")
    manifest = _read_manifest(directory)
    studio_root = os.path.join(directory, STUDIO)
    engine = None
    problems = []
    to_make = []
    for name, text in texts.items():
        language, slug = _split(name)
        report.languages[language] = report.languages.get(language, 0) + 1
        relative = f"{language}/{slug}.wav"
        path = os.path.join(directory, relative)
        entry = manifest.get(name)
        current = _sha256(path)
        studio_relative = f"{STUDIO}/{relative}"
        studio_path = os.path.join(studio_root, relative)

        if current is not None and (entry is None or entry["sha256"] != current) and not force:
            problems.append(
                f"{path}: changed since it was made, or not made by us: to keep it, move it to "
                f"{studio_path}; to replace it, delete it or build with --force"
            )
            continue

        if os.path.exists(studio_path):
            studio_sha = _sha256(studio_path)
            if entry and entry["source"] == STUDIO_SOURCE and entry["sha256"] == studio_sha == current:
                report.studio.append(name)
                if entry["text"] != text:
                    report.studio_outdated.append(name)
                continue
            try:
                new_entry = _studio_entry(name, text, relative, studio_relative, studio_path)
            except (PromptError, ValueError) as e:
                problems.append(f"studio recording of {name}: {e}")
                continue
            with open(studio_path, "rb") as file:
                write_atomically(path, file.read())
            manifest[name] = new_entry
            report.studio.append(name)
            continue

        if engine is None:
            engine = synthesise.engine
        voice = synthesise.voice(language)
        said = spoken(name, text)
        if (
            not force
            and entry is not None
            and entry["source"] == engine
            and entry["text"] == text
            and entry.get("spoken", text) == said
            and entry.get("voice") == voice
            and entry.get("processing") == PROCESSING
            and current == entry["sha256"]
        ):
            report.reused.append(name)
            continue
        to_make.append({
            "name": name,
            "language": language,
            "text": text,
            "spoken": said,
            "file": relative,
            "source": engine,
            "voice": voice,
            "processing": PROCESSING,
        })

    if workers is None:
        workers = os.cpu_count() or 1
    try:
        # closing: a failure here stops the workers at once, not when the generator is collected.
        with contextlib.closing(_synthesised(synthesise, to_make, workers)) as made:
            for entry, audio in made:
                if not audio:
                    problems.append(
                        f"prompt {entry['name']}: the synthesiser gave only silence for {entry['spoken']!r}"
                    )
                    continue
                data = wav_bytes(audio)
                write_atomically(os.path.join(directory, entry["file"]), data)
                entry["duration_ms"] = round(len(audio) * 1000 / SAMPLE_RATE)
                entry["sha256"] = hashlib.sha256(data).hexdigest()
                if entry["spoken"] == entry["text"]:
                    del entry["spoken"]
                manifest[entry["name"]] = {key: entry[key] for key in _ENTRY_KEYS if key in entry}
                report.made.append(entry["name"])
    finally:
        # What was made is kept, even when a later prompt failed.
        if names is None:
            _remove_orphans(directory, manifest, texts, languages, instruments is not None, report)
            _unknown_studio_files(studio_root, texts, languages, instruments is not None, report)
        os.makedirs(directory, exist_ok=True)
        _write_manifest(directory, manifest)
    if problems:
        raise PromptPackError(problems, report)
    return report


_ENTRY_KEYS = (
    "name", "language", "text", "spoken", "file", "duration_ms", "sha256", "source", "voice", "processing"
)


def _speech(synthesise, text, language):
    """One prompt's telephone audio: the job of a worker process."""
    rate, samples = synthesise(text, language)
    return telephone_audio(rate, samples)


def _synthesised(synthesise, to_make, workers):
    """
    C{(entry, audio)} for each of C{to_make}, in order, made in C{workers}
    processes.  espeak-ng takes a fifth of the time of a prompt, resampling
    and levelling in Python the rest: a worker does both, so that the work
    spreads over every CPU and only text and 8 kHz audio cross between
    processes.  At most a few prompts a worker are in hand at once, so that
    a failure wastes little and the audio waiting to be written stays small.
    """

    def failed(entry, error):
        return SynthesisError(f"prompt {entry['name']}: {error}")

    if workers <= 1 or len(to_make) <= 1:
        for entry in to_make:
            try:
                yield entry, _speech(synthesise, entry["spoken"], entry["language"])
            except SynthesisError as e:
                raise failed(entry, e) from None
        return
    pending = collections.deque()
    with concurrent.futures.ProcessPoolExecutor(min(workers, len(to_make))) as pool:
        try:
            for entry in to_make:
                pending.append((entry, pool.submit(_speech, synthesise, entry["spoken"], entry["language"])))
                while len(pending) > 4 * workers or (pending and pending[0][1].done()):
                    entry, future = pending.popleft()
                    try:
                        yield entry, future.result()
                    except SynthesisError as e:
                        raise failed(entry, e) from None
            while pending:
                entry, future = pending.popleft()
                try:
                    yield entry, future.result()
                except SynthesisError as e:
                    raise failed(entry, e) from None
        finally:
            for _, future in pending:
                future.cancel()


def _selected(texts, languages, names):
    if names is None:
        return texts
    wanted, unknown = {}, []
    for requested in names:
        matches = [name for name in texts if requested in (name, name.split("/", 1)[1])]
        if not matches:
            unknown.append(f"prompt {requested!r} is not in the catalogue of {', '.join(languages)}")
        wanted.update((name, texts[name]) for name in matches)
    if unknown:
        raise PromptPackError(unknown)
    return wanted


def _remove_orphans(directory, manifest, texts, languages, with_stock_names, report):
    """
    Synthesised prompts no longer in the catalogue go, files and entries;
    stock names only when the catalogue has them (built with instruments).
    """
    for name, entry in list(manifest.items()):
        if name in texts or entry["language"] not in languages:
            continue
        if not with_stock_names and stock_names.is_stock_name(_split(name)[1]):
            continue
        path = os.path.join(directory, entry["file"])
        if _sha256(path) in (entry["sha256"], None):
            if os.path.exists(path):
                os.remove(path)
            del manifest[name]
            report.removed.append(name)


def _unknown_studio_files(studio_root, texts, languages, with_stock_names, report):
    for language in languages:
        folder = os.path.join(studio_root, language)
        if not os.path.isdir(folder):
            continue
        for file_name in sorted(os.listdir(folder)):
            slug, extension = os.path.splitext(file_name)
            if not with_stock_names and stock_names.is_stock_name(slug):
                continue
            if extension == ".wav" and f"{language}/{slug}" not in texts:
                report.warnings.append(
                    f"{os.path.join(folder, file_name)}: no prompt {language}/{slug} in the catalogue, not used"
                )


def resolve(directory, name):
    """The path of prompt C{name}'s WAV file in the pack at C{directory}."""
    language, slug = _split(name)
    path = os.path.join(directory, language, f"{slug}.wav")
    if not os.path.isfile(path):
        instruments = " --instruments etc/instruments.csv" if stock_names.is_stock_name(slug) else ""
        raise PromptNotFound(
            f"prompt {name}: no file {path} (build the pack: callcenter prompts build --dir {directory}{instruments})"
        )
    return path
