"""The media engine: RTP, codecs, DTMF, tones."""
