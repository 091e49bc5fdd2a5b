"""
The RADIUS attribute dictionary: ours (C{etc/radius/dictionary}, RFC 2865,
2866, 2869, 3162 and 5176 in FreeRADIUS format) plus the vendor
dictionaries the configuration names, read once into one
L{pyrad.dictionary.Dictionary} at startup.

pyrad's own dictionary files install in odd places and FreeRADIUS's
complete one does not load in pyrad, so we ship ours.
"""

import os

from pyrad.dictionary import Dictionary, ParseError

from callcenter.config import Kind, Mismatch, show

STANDARD_DICTIONARY = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "etc", "radius", "dictionary"
)


def load_dictionary(vendor_files=(), standard=STANDARD_DICTIONARY):
    """
    Our dictionary, then each vendor file in order (a later definition
    replaces an earlier one, as in FreeRADIUS).

    @raise OSError: a file cannot be read.
    @raise pyrad.dictionary.ParseError: a file is not a dictionary.
    """
    return Dictionary(standard, *vendor_files)


class DictionaryFiles(Kind):
    """
    Vendor dictionaries in FreeRADIUS format, e.g.
    C{["/etc/callcenter/radius/dictionary.huawei"]}: each must load after
    ours, so a typo is a config error at startup, not a packet we cannot
    read at the first login.
    """

    expected = 'an array of dictionary file paths such as ["/etc/callcenter/radius/dictionary.vendor"]'

    def parse(self, value):
        if not isinstance(value, (list, tuple)) or not all(isinstance(p, str) and p for p in value):
            raise Mismatch()
        problems = []
        for path in value:
            try:
                load_dictionary([path])
            except OSError as e:
                problems.append(f"{show(path)}: cannot read: {e.strerror or e}")
            except (ParseError, ValueError) as e:
                problems.append(f"{show(path)}: {' '.join(str(e).split())}")
        if problems:
            raise Mismatch("; ".join(problems))
        return tuple(value)
