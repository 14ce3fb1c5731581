"""The DivX/Xvid packed bitstream of many real UCF-101 files, made by rewriting the packets of
FFmpeg's MPEG-4 encoder (:func:`avssl.data.encode.write_video` with ``packed_b_frames=True``).
Design notes: docs/design/data.md, "avssl.data.divx".
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

#: MPEG-4 user data (start code 0x1B2) that marks a DivX 5 "packed bitstream"; copied from the
#: real UCF-101 clip. FFmpeg parses ``DivX%db%d%c`` and sets ``divx_packed`` when %c is 'p'.
DIVX_PACKED_USER_DATA = b"\x00\x00\x01\xb2DivX503b1393p"

_VOP_START = b"\x00\x00\x01\xb6"
_VOP_TYPES = "IPBS"  # vop_coding_type 00, 01, 10, 11


def _time_increment_bits(time_base: Fraction) -> int:
    # FFmpeg's MPEG-4 encoder: vop_time_increment_resolution = time_base.den and
    # time_increment_bits = av_log2(den - 1) + 1.
    return max(1, (time_base.denominator - 1).bit_length())


class _Packer:
    """Streaming rewrite of MPEG-4 packets (decode order) into the DivX packed layout."""

    def __init__(self, time_increment_bits: int) -> None:
        self.tib = time_increment_bits
        self.group: list[bytes] = []  # anchor packet followed by its B packets
        self.group_key = False
        self.first = True
        self.count = 0  # chunks muxed so far (their dts)

    def push(self, data: bytes, key: bool) -> list[tuple[bytes, bool]]:
        if self.first:
            data = insert_user_data(data, DIVX_PACKED_USER_DATA)
            self.first = False
        out: list[tuple[bytes, bool]] = []
        if vop_type(data) == "B":
            if not self.group:
                raise ValueError("MPEG-4 stream starts with a B-VOP; cannot pack it")
            self.group.append(data)
            return out
        out = self._flush_group()
        self.group, self.group_key = [data], key
        return out

    def flush(self) -> list[tuple[bytes, bool]]:
        out = self._flush_group()
        self.group = []
        return out

    def _flush_group(self) -> list[tuple[bytes, bool]]:
        if not self.group:
            return []
        anchor, bs = self.group[0], self.group[1:]
        if not bs:
            return [(anchor, self.group_key)]
        out = [(anchor + bs[0], self.group_key)]
        out += [(b, False) for b in bs[1:]]
        out.append((n_vop_for(anchor, self.tib), False))
        return out


def pack_b_frames(packets: Sequence[bytes], time_increment_bits: int) -> list[bytes]:
    """Rewrite MPEG-4 Part 2 packets (decode order, one VOP each) into DivX packed chunks.

    The first packet gets :data:`DIVX_PACKED_USER_DATA`; every anchor (I/P) followed by B-VOPs
    ``B1..Bk`` becomes ``[anchor+B1], [B2], ..., [Bk], [N-VOP]`` so #chunks == #frames.
    """
    packer = _Packer(time_increment_bits)
    out: list[tuple[bytes, bool]] = []
    for p in packets:
        out += packer.push(p, False)
    out += packer.flush()
    return [d for d, _ in out]


def vop_type(data: bytes) -> str:
    """Coding type ('I', 'P', 'B' or 'S') of the first VOP in an MPEG-4 Part 2 packet."""
    i = data.find(_VOP_START)
    if i < 0 or i + 4 >= len(data):
        raise ValueError(f"no VOP start code in a {len(data)}-byte MPEG-4 packet")
    return _VOP_TYPES[data[i + 4] >> 6]


def insert_user_data(data: bytes, user_data: bytes) -> bytes:
    """Insert MPEG-4 user data before the first VOP start code (after the VOL header)."""
    i = data.find(_VOP_START)
    if i < 0:
        raise ValueError("no VOP start code in the first MPEG-4 packet")
    return data[:i] + user_data + data[i:]


def n_vop_for(anchor: bytes, time_increment_bits: int) -> bytes:
    """A not-coded P-VOP header (``vop_coded = 0``) carrying the anchor VOP's time increment.

    Bits: start code 00 00 01 B6, vop_coding_type '01', modulo_time_base '0', marker '1',
    vop_time_increment (the anchor's), marker '1', vop_coded '0', then MPEG-4 stuffing: a '0' and
    '1's up to the byte boundary. Like DivX/Xvid (checked against every N-VOP of the real UCF-101
    clip), modulo_time_base is '0' even when the anchor's is not.
    """
    i = anchor.find(_VOP_START)
    if i < 0:
        raise ValueError("anchor packet has no VOP start code")
    bits = _bits(anchor[i + 4 : i + 4 + 16])
    pos = 2  # skip vop_coding_type
    while bits[pos] == "1":  # modulo_time_base
        pos += 1
    pos += 1  # its terminating '0'
    if bits[pos] != "1" or bits[pos + 1 + time_increment_bits] != "1":
        raise ValueError(
            f"VOP header markers not where expected with time_increment_bits={time_increment_bits}"
        )
    increment = bits[pos + 1 : pos + 1 + time_increment_bits]
    header = "01" + "0" + "1" + increment + "1" + "0"
    header += "0" + "1" * ((-(len(header) + 1)) % 8)
    return _VOP_START + int(header, 2).to_bytes(len(header) // 8, "big")


def _bits(data: bytes) -> str:
    return "".join(f"{b:08b}" for b in data)
