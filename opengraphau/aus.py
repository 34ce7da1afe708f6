"""The 41 action units the models predict, in their output order: ids, names, column names.

Plain data, so importing it is free.
"""

from __future__ import annotations

#: Ids of the 27 main AUs followed by the 14 left/right AUs, in the models' output order.
AU_IDS: tuple[str, ...] = (
    "1",
    "2",
    "4",
    "5",
    "6",
    "7",
    "9",
    "10",
    "11",
    "12",
    "13",
    "14",
    "15",
    "16",
    "17",
    "18",
    "19",
    "20",
    "22",
    "23",
    "24",
    "25",
    "26",
    "27",
    "32",
    "38",
    "39",
    "L1",
    "R1",
    "L2",
    "R2",
    "L4",
    "R4",
    "L6",
    "R6",
    "L10",
    "R10",
    "L12",
    "R12",
    "L14",
    "R14",
)

AU_NAMES: tuple[str, ...] = (
    "Inner brow raiser",
    "Outer brow raiser",
    "Brow lowerer",
    "Upper lid raiser",
    "Cheek raiser",
    "Lid tightener",
    "Nose wrinkler",
    "Upper lip raiser",
    "Nasolabial deepener",
    "Lip corner puller",
    "Sharp lip puller",
    "Dimpler",
    "Lip corner depressor",
    "Lower lip depressor",
    "Chin raiser",
    "Lip pucker",
    "Tongue show",
    "Lip stretcher",
    "Lip funneler",
    "Lip tightener",
    "Lip pressor",
    "Lips part",
    "Jaw drop",
    "Mouth stretch",
    "Lip bite",
    "Nostril dilator",
    "Nostril compressor",
    "Left inner brow raiser",
    "Right inner brow raiser",
    "Left outer brow raiser",
    "Right outer brow raiser",
    "Left brow lowerer",
    "Right brow lowerer",
    "Left cheek raiser",
    "Right cheek raiser",
    "Left upper lip raiser",
    "Right upper lip raiser",
    "Left nasolabial deepener",
    "Right nasolabial deepener",
    "Left dimpler",
    "Right dimpler",
)

#: Column names used in every output file ("AU1", ..., "AUR14").
AU_COLUMNS: tuple[str, ...] = tuple(f"AU{i}" for i in AU_IDS)
#: With --smooth, the smoothed values beside the model's own (which keep `AU_COLUMNS`).
SMOOTH_COLUMNS: tuple[str, ...] = tuple(f"{c}_smooth" for c in AU_COLUMNS)

NUM_MAIN_AUS = 27
NUM_SUB_AUS = 14
#: For each left/right pair, the index of the main AU it refines
#: (AU1, AU2, AU4, AU6, AU10, AU12, AU14).
SUB_AU_PARENTS: tuple[int, ...] = (0, 1, 2, 4, 7, 8, 11)
