"""The demo datasets a fresh workspace starts with, and the code that makes them: transcripts,
CHILDES-shaped pairs and instruction pairs (assets/).

`python -m dpo_core.data.demo_datasets` rewrites `assets/` byte for byte from a fixed seed (pure
Python, no model); `seed_workspace(store)` imports the assets into a fresh workspace.

Longer than 400 lines because most of it is the word lists and templates the demo text is drawn
from; the code itself is a few short functions.
"""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path

from ..errors import DataError
from ..formats import CHAT_FORMAT, CHILDES_FORMAT
from ..store import Store
from .datasets import Pair, create_dataset, dataset_names, insert_pairs
from .transcripts import build_transcript_pairs, parse_transcript

SEED = 1234
ASSETS = Path(__file__).resolve().parents[2] / "assets"
TRANSCRIPTS = "demo_transcripts.cha"
CHILDES_PAIRS = "demo_childes_pairs.csv"
INSTRUCT_PAIRS = "demo_instruct_pairs.json"
SESSIONS = 12
EXCHANGES_PER_SESSION = 230
WRAP = 52  # CHAT main lines longer than this continue on a tab-indented line

# -- vocabulary of the transcripts ---------------------------------------------------------
OBJECTS = ["ball", "truck", "book", "spoon", "cup", "hat", "shoe", "block", "car", "doll",
           "train", "boat", "sock", "brush", "box", "plane", "drum", "bucket", "kite", "bike"]
COLORS = ["red", "blue", "green", "yellow", "purple", "orange", "pink", "white", "black", "brown"]
ANIMALS = [("dog", "woof"), ("cat", "meow"), ("cow", "moo"), ("duck", "quack"), ("sheep", "baa"),
           ("pig", "oink"), ("horse", "neigh"), ("owl", "hoo"), ("lion", "roar"), ("bee", "buzz")]
PLACES = ["under the table", "in the box", "on the chair", "behind the door", "in the garden",
          "on the bed", "in the kitchen", "under the blanket", "in the bath", "up the tree"]
OUTINGS = ["park", "shop", "zoo", "beach", "farm", "library", "playground", "pool"]
FOODS = ["an apple", "some milk", "a banana", "some juice", "a cookie", "some cheese",
         "a sandwich", "some grapes", "some toast", "a yogurt"]
NUMBERS = ["one", "two", "three", "four", "five", "six"]
PEOPLE = ["Grandma", "Grandpa", "Daddy", "Mommy", "the baby", "the doctor", "the farmer",
          "Uncle Tom", "Auntie Sue", "the teacher"]
ACTIONS = [("pushing", "pushed"), ("drawing", "drew"), ("building", "built"),
           ("washing", "washed"), ("throwing", "threw"), ("hiding", "hid"), ("fixing", "fixed")]
ADJECTIVES = [("big", "little"), ("hot", "cold"), ("wet", "dry"), ("heavy", "light"),
              ("soft", "hard"), ("clean", "dirty"), ("full", "empty")]
ADULT_FOLLOWUPS = ["that's right !", "good job .", "oh I see .", "really ?", "okay .",
                   "yes .", "well done .", "is that so ?", "hm .", "good girl .", "clever boy !",
                   "you're right .", "oh dear .", "wow !"]
CHILD_OPENERS = ["Mommy , look !", "look at my {obj} !", "I want {food} .", "where's Daddy ?",
                 "Daddy , come here !", "I did it !", "my {obj} broke .", "uhoh !",
                 "I'm a {animal} .", "can I have {food} ?", "again !", "no more .",
                 "Mommy , where is my {obj} ?", "I don't like it ."]
COMMENTS = ["child points at the window", "child laughs", "mother shows the picture book",
            "toy falls on the floor", "child runs to the door", "father enters the room",
            "child is eating", "unclear utterance omitted"]


def _exchange(rng: random.Random) -> tuple[str, str]:
    """One adult turn and a child reply that fits it (the chosen reply of a pair)."""
    obj, color = rng.choice(OBJECTS), rng.choice(COLORS)
    objs = obj + ("es" if obj.endswith(("s", "sh", "x", "ch")) else "s")
    animal, sound = rng.choice(ANIMALS)
    place, food, num = rng.choice(PLACES), rng.choice(FOODS), rng.choice(NUMBERS)
    person, outing = rng.choice(PEOPLE), rng.choice(OUTINGS)
    doing, did = rng.choice(ACTIONS)
    adj, opp = rng.choice(ADJECTIVES)
    c2 = rng.choice([c for c in COLORS if c != color])
    table = [
        (["what is that ?", "what's this ?", "and what is this one ?"],
         [f"a {obj} .", f"it's a {obj} .", f"that's a {color} {obj} !", f"I think it's a {obj} .",
          f"my {obj} !"]),
        ([f"what color is the {obj} ?", f"what color is your {obj} ?"],
         [f"{color} .", f"it's {color} .", f"the {obj} is {color} .", f"{color} , like mine !"]),
        ([f"where is the {animal} ?", f"where did the {animal} go ?"],
         [f"{place} .", f"it's {place} .", f"the {animal} is {place} !", f"there , {place} ."]),
        ([f"what does the {animal} say ?", f"and what does a {animal} say ?"],
         [f"{sound} .", f"{sound} {sound} !", f"the {animal} says {sound} .", f"{sound} !"]),
        ([f"do you want {food} ?", f"would you like {food} ?"],
         ["yes please .", "no thank you .", f"yeah , {food} !", "no , I'm full .",
          f"I want {rng.choice(FOODS)} ."]),
        ([f"how many {objs} are there ?", f"can you count the {animal}s ?"],
         [f"{num} .", f"{num} {objs} !", f"there are {num} .", f"one , two , {num} !"]),
        ([f"put the {obj} in the box .", f"give me the {obj} please .", f"pick up your {obj} ."],
         ["okay .", "I put it in .", "no , I don't want to .", "there , all done !",
          f"here's the {obj} ."]),
        ([f"can you say {animal} ?", f"say {obj} .", f"can you say {color} ?"],
         [f"{animal} .", f"{obj} !", f"{color} {color} .", "no .", f"{animal} {animal} !"]),
        (["who is that ?", "who's in the picture ?"],
         [f"{person} .", f"that's {person} !", f"it's {person} .", f"{person} and me ."]),
        ([f"look at the big {animal} .", f"see the {animal} ?"],
         [f"big {animal} !", f"wow , a {animal} !", "I see it .", f"a {animal} says {sound} ."]),
        (["what are you doing ?", "what are you doing there ?"],
         [f"I'm {doing} the {obj} .", f"{doing} .", f"playing with my {obj} .",
          f"{doing} it , Mommy ."]),
        ([f"is the {obj} {adj} ?", f"is your {obj} {adj} ?"],
         ["yes it is .", f"no , it's {opp} .", f"yeah , very {adj} !", f"it's {opp} ."]),
        ([f"what did you do at the {outing} today ?", f"did you like the {outing} ?"],
         [f"I {did} a {obj} .", f"we saw a {animal} .", "yes !", f"I {did} it and {person} too ."]),
        (["are you hungry ?", "are you tired ?", "are you okay ?"],
         ["yes .", "no , I'm not !", "a little bit .", "yeah I am .", "no ."]),
        (["shall we read a book ?", "do you want a story ?"],
         [f"yeah , the {animal} book !", "okay Mommy .", "no , play !", f"the {color} book ."]),
        ([f"which one do you want , the {color} one or the {c2} one ?"],
         [f"the {color} one .", f"{c2} !", "that one .", f"I want the {c2} one ."]),
        ([f"what happened to the {obj} ?", f"oh no , where's your {obj} ?"],
         ["it broke .", "it fell down .", f"the {animal} took it .", f"{place} ."]),
        (["where are we going ?", "where shall we go tomorrow ?"],
         [f"to the {outing} .", f"{outing} !", f"the {outing} with {person} .", "home ."]),
    ]
    adult, replies = rng.choice(table)
    return rng.choice(adult), rng.choice(replies)


def _fill(template: str, rng: random.Random) -> str:
    return template.format(obj=rng.choice(OBJECTS), food=rng.choice(FOODS),
                           animal=rng.choice(ANIMALS)[0])


def _session_turns(rng: random.Random) -> list[tuple[str, str]]:
    """(speaker, text) turns of one session, with %com tiers as ('%com', text)."""
    turns: list[tuple[str, str]] = []
    father_share = rng.choice([0.1, 0.25, 0.4])
    for _ in range(EXCHANGES_PER_SESSION):
        adult = "FAT" if rng.random() < father_share else "MOT"
        roll = rng.random()
        if roll < 0.08:
            turns.append(("CHI", _fill(rng.choice(CHILD_OPENERS), rng)))
        if roll > 0.9:  # an adult turn the child does not answer
            turns.append((adult, _exchange(rng)[0]))
        question, reply = _exchange(rng)
        turns += [(adult, question), ("CHI", reply)]
        if rng.random() < 0.35:
            turns.append((adult, rng.choice(ADULT_FOLLOWUPS)))
        if rng.random() < 0.04:
            turns.append(("%com", rng.choice(COMMENTS)))
    return turns


def _chat_line(speaker: str, text: str) -> str:
    """A CHAT main line (or %com tier), wrapped onto tab-indented continuation lines."""
    tag = f"{speaker}:" if speaker.startswith("%") else f"*{speaker}:"
    lines, current = [], f"{tag}\t"
    for word in text.split():
        if len(current) + len(word) > WRAP and not current.endswith("\t"):
            lines.append(current.rstrip())
            current = "\t"
        current += word + " "
    lines.append(current.rstrip())
    return "\n".join(lines)


def make_transcripts(seed: int = SEED) -> str:
    """The demo corpus in CHAT form: several sessions with headers, tiers and wrapped lines."""
    rng = random.Random(seed)
    out = ["@UTF8"]
    for number in range(1, SESSIONS + 1):
        out += ["@Begin", "@Languages:\teng",
                "@Participants:\tCHI Target_Child, MOT Mother, FAT Father",
                "@ID:\teng|demo|CHI|2;6.|female|||Target_Child|||",
                "@ID:\teng|demo|MOT|||||Mother|||", "@ID:\teng|demo|FAT|||||Father|||",
                f"@Comment:\tdemo session {number}, generated by dpo_core.data.demo_datasets"]
        for speaker, text in _session_turns(rng):
            out.append(_chat_line(speaker, text))
        out.append("@End")
    return "\n".join(out) + "\n"


# -- CHILDES-shaped pair file ----------------------------------------------------------------
def childes_csv(pairs: list[Pair]) -> str:
    """Pairs as the CHILDES CSV: unnamed index, pospair, negpair; cells 'prompt<TAB>reply'."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")  # the quoting pandas.to_csv uses
    writer.writerow(["", "pospair", "negpair"])
    for i, pair in enumerate(pairs):
        writer.writerow([i, f"{pair.prompt}\t{pair.chosen}", f"{pair.prompt}\t{pair.rejected}"])
    return buffer.getvalue()


def read_childes_csv(text: str) -> list[Pair]:
    """Pairs from the CHILDES CSV shape (the inverse of childes_csv)."""
    pairs = []
    for row in csv.DictReader(io.StringIO(text)):
        prompt, chosen = row["pospair"].split("\t", 1)
        rejected = row["negpair"].split("\t", 1)[1]
        pairs.append(Pair(prompt=prompt, chosen=chosen, rejected=rejected, source="demo"))
    return pairs


def make_childes_pairs(transcripts: str, seed: int = SEED) -> str:
    """Length-matched, no-overlap minimal pairs of the demo corpus, as CHILDES CSV text."""
    turns = parse_transcript(transcripts, name=TRANSCRIPTS)
    return childes_csv(build_transcript_pairs(turns, match="len", overlap=False, seed=seed))


# -- instruction pairs for the chat model ----------------------------------------------------
UNHELPFUL = ["I don't know.", "I can't help with that.", "Why do you want to know?",
             "Look it up yourself.", "Not my problem.", "Figure it out.", "No idea.", "Whatever.",
             "Ask someone else.", "That's a boring question."]
CAPITALS = [("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Spain", "Madrid"),
            ("Germany", "Berlin"), ("Canada", "Ottawa"), ("Australia", "Canberra"),
            ("Egypt", "Cairo"), ("Kenya", "Nairobi"), ("Brazil", "Brasilia"), ("Peru", "Lima"),
            ("Norway", "Oslo"), ("Sweden", "Stockholm"), ("Portugal", "Lisbon"),
            ("Greece", "Athens"), ("Ireland", "Dublin"), ("Poland", "Warsaw"),
            ("Austria", "Vienna"), ("Chile", "Santiago"), ("Thailand", "Bangkok")]
OPPOSITES = [("hot", "cold"), ("big", "small"), ("early", "late"), ("happy", "sad"),
             ("open", "closed"), ("full", "empty"), ("fast", "slow"), ("light", "dark"),
             ("up", "down"), ("strong", "weak"), ("old", "young"), ("wet", "dry"),
             ("loud", "quiet"), ("rich", "poor"), ("win", "lose"), ("push", "pull"),
             ("begin", "end"), ("above", "below"), ("inside", "outside"), ("buy", "sell")]
SYNONYMS = [("happy", "joyful"), ("big", "large"), ("quick", "fast"), ("smart", "clever"),
            ("begin", "start"), ("tired", "sleepy"), ("angry", "furious"), ("small", "tiny"),
            ("pretty", "beautiful"), ("scared", "afraid"), ("easy", "simple"),
            ("funny", "amusing"), ("shut", "close"), ("talk", "speak"), ("rich", "wealthy")]
DEFINITIONS = [
    ("generous", "happy to give or share more than is expected"),
    ("curious", "eager to know or learn something"), ("fragile", "easily broken or damaged"),
    ("ancient", "very old, from a long time ago"), ("humble", "not proud; modest about yourself"),
    ("brave", "ready to face danger or pain without fear"),
    ("punctual", "arriving or doing something at the agreed time"),
    ("vivid", "very bright or clear, easy to picture"),
    ("reluctant", "unwilling and hesitant to do something"),
    ("patient", "able to wait calmly without getting annoyed"),
    ("obvious", "easy to see or understand"), ("rare", "not found or seen very often"),
    ("loyal", "firm and faithful in support of someone"),
    ("tidy", "neat and in good order"), ("gloomy", "dark, or sad and without hope")]
CONVERSIONS = [("centimeters", "meters", 100), ("minutes", "hours", 60), ("grams", "kilograms",
               1000), ("meters", "kilometers", 1000), ("hours", "days", 24),
               ("seconds", "minutes", 60), ("days", "weeks", 7), ("months", "years", 12),
               ("millimeters", "centimeters", 10), ("milliliters", "liters", 1000)]
POLITE = [("Give me the report now.", "Could you please send me the report when you have a moment?"),
          ("Move.", "Excuse me, could I get past, please?"),
          ("Your code is wrong.", "I think there may be a small problem in the code; could we look at it together?"),
          ("Call me back.", "Could you please call me back when you're free?"),
          ("Stop talking.", "Would you mind if we paused the conversation for a moment?"),
          ("Fix this today.", "Would it be possible to fix this today, please?"),
          ("I need your notes.", "Could I please borrow your notes?"),
          ("Answer my email.", "When you get a chance, could you reply to my email?"),
          ("Be quiet.", "Could you please keep the noise down a little?"),
          ("Send the file.", "Could you send me the file, please?"),
          ("Come here.", "Could you come over here for a moment, please?"),
          ("You're late again.", "I noticed you were late again; is everything all right?"),
          ("Turn it down.", "Would you mind turning the volume down a bit?"),
          ("Wait.", "Could you wait a moment, please?"),
          ("Explain this.", "Could you please explain this to me?")]
HOWTO = [
    ("How do I boil an egg?", "Put the egg in boiling water for about 7 minutes for a firm yolk (5 for a soft one), then cool it in cold water before peeling.", "Just boil it."),
    ("How can I fall asleep faster?", "Keep a regular bedtime, avoid screens and caffeine in the evening, and keep your room dark and cool. A few slow, deep breaths in bed also help.", "Stop thinking."),
    ("How do I make a cup of tea?", "Boil water, pour it over a tea bag in a cup, let it steep for 3 to 5 minutes, remove the bag, and add milk or sugar if you like.", "Water and a tea bag. Obviously."),
    ("How do I reset my router?", "Unplug it, wait about 30 seconds, and plug it back in. If that doesn't help, hold the reset button for 10 seconds to restore factory settings.", "Buy a new one."),
    ("How can I remember new words?", "Review them a few times over several days, use each one in a sentence, and test yourself with flashcards instead of rereading.", "Just memorize them."),
    ("How do I water a cactus?", "Water it thoroughly only when the soil is completely dry, about every two to three weeks, and less often in winter.", "Cacti don't need water."),
    ("How should I start a short speech?", "Open with a brief greeting, then a surprising fact, a question or a short story that leads into your main point.", "Just start talking."),
    ("How do I clean a computer keyboard?", "Turn it off, shake out crumbs, use compressed air between the keys, and wipe the keys with a cloth lightly dampened with alcohol.", "Put it in the dishwasher."),
    ("How can I save money on groceries?", "Plan meals for the week, shop with a list, buy store brands and seasonal produce, and avoid shopping while hungry.", "Eat less."),
    ("How do I write a thank-you note?", "Address the person, thank them for the specific gift or help, say how you'll use or enjoyed it, and close warmly with your name.", "Write thanks and sign it."),
    ("How do I tie a simple knot?", "Make a loop with the rope, pass the end through the loop, and pull both ends tight. That's an overhand knot.", "Google it."),
    ("How do I stop a nosebleed?", "Sit up, lean slightly forward, and pinch the soft part of your nose for 10 to 15 minutes. Get medical help if it doesn't stop.", "Tilt your head way back."),
    ("How can I be more productive in the morning?", "Prepare the night before, start with your most important task, and keep your phone away for the first hour.", "Wake up earlier, duh."),
    ("How do I keep bread fresh?", "Store it in a bread box or paper bag at room temperature for a few days, or slice and freeze it for longer.", "Put it in the fridge forever."),
    ("How do I plant tomato seeds?", "Sow them a few millimeters deep in seed compost, keep them warm and moist, and move the seedlings to bigger pots once they have true leaves.", "Throw them on the ground."),
    ("How can I calm down before an exam?", "Breathe slowly, remind yourself of what you have prepared, arrive a little early, and read each question carefully before answering.", "Don't be nervous."),
    ("How do I remove a coffee stain from a shirt?", "Rinse it with cold water from the back as soon as possible, rub in a little liquid detergent, then wash as usual.", "Throw the shirt away."),
    ("How do I learn to touch type?", "Keep your fingers on the home row, practise daily for 15 minutes with a typing program, and focus on accuracy before speed.", "Type more."),
    ("How can I make my phone battery last longer?", "Lower the screen brightness, close apps you are not using, turn off location and Bluetooth when not needed, and use battery saver mode.", "Don't use your phone."),
    ("How do I introduce myself at a meeting?", "Say your name, your role and one sentence about what you are working on, then thank everyone and hand over.", "Say your name. Done.")]
SCIENCE = [
    ("Why is the sky blue?", "Sunlight is scattered by the air, and blue light is scattered much more than red light, so blue reaches our eyes from every direction.", "Because it reflects the ocean."),
    ("Why do we have seasons?", "The Earth's axis is tilted, so as it orbits the Sun each hemisphere gets more direct sunlight for part of the year (summer) and less for the rest (winter).", "Because the Earth gets closer to the Sun in summer."),
    ("What is photosynthesis?", "It is how plants use sunlight, water and carbon dioxide to make sugar for energy, releasing oxygen as a by-product.", "When plants eat soil."),
    ("Why does ice float?", "Water expands when it freezes, so ice is less dense than liquid water and floats on top.", "Because ice is full of air."),
    ("What causes thunder?", "Lightning heats the air very quickly, making it expand explosively; that shock wave is the sound we hear as thunder.", "Clouds bumping into each other."),
    ("How do vaccines work?", "They show the immune system a harmless piece or copy of a germ, so it learns to recognise and fight the real germ quickly later.", "They kill every germ in your body."),
    ("Why do leaves change color in autumn?", "As days shorten, trees stop making green chlorophyll, revealing yellow and orange pigments; some leaves also make red ones.", "Because they get cold."),
    ("What is gravity?", "Gravity is the force by which masses attract each other; it keeps us on the ground and the Moon in orbit around the Earth.", "It's magnets in the ground."),
    ("Why is the ocean salty?", "Rivers carry small amounts of dissolved minerals from rocks into the sea; the water evaporates but the salt stays and builds up.", "Because fish are salty."),
    ("What is the water cycle?", "Water evaporates, condenses into clouds, falls as rain or snow, and flows back into rivers and seas, over and over.", "Rain. That's it."),
    ("Why do we need sleep?", "Sleep lets the body repair itself and the brain store memories and clear waste; without it, attention and mood suffer.", "We don't really need it."),
    ("How does a rainbow form?", "Sunlight enters raindrops, bends and reflects inside them, and splits into its colors, which we see as an arc opposite the Sun.", "Rainbows are painted by the clouds."),
    ("What is an atom?", "An atom is the smallest unit of a chemical element: a tiny nucleus of protons and neutrons surrounded by electrons.", "A kind of small cell."),
    ("Why do cats purr?", "Cats purr by vibrating muscles in their larynx; they do it when content, but also to calm themselves when stressed or hurt.", "Because they have a motor inside."),
    ("Why does the Moon change shape?", "The Moon doesn't change shape: as it orbits the Earth we see different amounts of its sunlit half, which gives the phases.", "The Earth's shadow covers it every night.")]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
THANKS = ["Thank you for your help!", "Thanks, that worked!", "Good morning!", "Hi, how are you?",
          "I finally passed my driving test!", "Sorry for the late reply.",
          "Can you help me with something?", "Good night!", "I'm feeling a bit stressed today.",
          "That explanation was really clear, thanks."]
THANKS_REPLIES = ["You're welcome! I'm glad I could help.", "Great, I'm happy it worked!",
                  "Good morning! How can I help you today?",
                  "I'm doing well, thank you for asking! How can I help?",
                  "Congratulations! That's a big achievement, well done.",
                  "No problem at all. How can I help?", "Of course! What do you need?",
                  "Good night, sleep well!",
                  "I'm sorry to hear that. Would it help to talk about what's on your mind?",
                  "I'm glad it helped! Let me know if you have more questions."]


def _facts(rng: random.Random) -> list[tuple[str, str, str]]:
    """(prompt, helpful answer, wrong answer) for the generated fact categories."""
    rows = []
    for country, capital in CAPITALS:
        wrong = rng.choice([c for _, c in CAPITALS if c != capital])
        rows.append((f"What is the capital of {country}?", f"The capital of {country} is {capital}.",
                     f"The capital of {country} is {wrong}."))
    for _ in range(40):
        a, b = rng.randint(2, 12), rng.randint(2, 12)
        op, value = rng.choice([("times", a * b), ("plus", a + b)])
        off = rng.choice([-2, -1, 1, 2, 10])
        rows.append((f"What is {a} {op} {b}?", f"{a} {op} {b} is {value}.", f"{a} {op} {b} is {value + off}."))
    for small, big, factor in CONVERSIONS * 2:
        n = rng.randint(2, 9)
        rows.append((f"How many {small} are in {n} {big}?",
                     f"There are {n * factor} {small} in {n} {big}, since each one has {factor}.",
                     f"{n} {big} is {n * factor * 10} {small}."))
    for word, opposite in OPPOSITES:
        rows.append((f"What is the opposite of '{word}'?", f"The opposite of '{word}' is '{opposite}'.",
                     f"The opposite of '{word}' is '{word}'."))
    for word, synonym in SYNONYMS:
        wrong = dict(OPPOSITES).get(word, "purple")
        rows.append((f"Give me a synonym for '{word}'.", f"A good synonym for '{word}' is '{synonym}'.",
                     f"'{wrong}'."))
    for word, meaning in DEFINITIONS:
        rows.append((f"What does '{word}' mean?", f"'{word.capitalize()}' means {meaning}.", "It's a word."))
    for i, day in enumerate(DAYS + DAYS[:3]):
        nxt = DAYS[(i + 1) % 7]
        rows.append((f"What day comes after {day}?", f"{nxt} comes after {day}.", f"{DAYS[(i + 3) % 7]}."))
    return rows


def make_instruct_pairs(seed: int = SEED) -> str:
    """About 200 TRL pairs: helpful, polite, concise answers vs curt, unhelpful or wrong ones."""
    rng = random.Random(seed)
    rows = [(p, good, bad if rng.random() < 0.6 else rng.choice(UNHELPFUL))
            for p, good, bad in _facts(rng)]
    rows += [(f"Rewrite this more politely: '{rude}'", polite, rude.rstrip(".") + "!")
             for rude, polite in POLITE]
    rows += [(p, good, bad if rng.random() < 0.7 else rng.choice(UNHELPFUL))
             for p, good, bad in HOWTO + SCIENCE]
    rows += [(p, good, rng.choice(UNHELPFUL)) for p, good in zip(THANKS, THANKS_REPLIES, strict=True)]
    rng.shuffle(rows)
    records = [{"prompt": p, "chosen": c, "rejected": r} for p, c, r in rows]
    return json.dumps(records, indent=1, ensure_ascii=False) + "\n"


# -- assets and workspace --------------------------------------------------------------------
def render_assets(seed: int = SEED) -> dict[str, str]:
    """The text of every demo asset, by file name."""
    transcripts = make_transcripts(seed)
    return {TRANSCRIPTS: transcripts, CHILDES_PAIRS: make_childes_pairs(transcripts, seed),
            INSTRUCT_PAIRS: make_instruct_pairs(seed)}


def write_assets(folder: Path = ASSETS) -> list[Path]:
    """Write the demo assets (byte-identical on every run)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in render_assets().items():
        path = folder / name
        path.write_bytes(text.encode("utf-8"))
        paths.append(path)
    return paths


def _with_split(pairs: list[Pair], train_share: float) -> list[Pair]:
    cut = int(len(pairs) * train_share)
    for i, pair in enumerate(pairs):
        pair.split = "train" if i < cut else "eval"
    return pairs


def seed_workspace(store: Store, folder: Path = ASSETS) -> list[str]:
    """Import the demo datasets into a store that has none yet; returns the names created."""
    missing = [name for name in (CHILDES_PAIRS, INSTRUCT_PAIRS) if not (folder / name).is_file()]
    if missing:
        raise DataError(f"Demo data {', '.join(missing)} is missing from {folder}.",
                        "Run `python -m dpo_core.data.demo_datasets` to write it again.")
    childes_text = (folder / CHILDES_PAIRS).read_text(encoding="utf-8")
    instruct = json.loads((folder / INSTRUCT_PAIRS).read_text(encoding="utf-8"))
    with store.write():  # one transaction: two first starts never both seed
        if dataset_names(store):
            return []
        childes = create_dataset(
            store, "demo-childes", recipe={"source": f"assets/{CHILDES_PAIRS}"},
            prompt_format=CHILDES_FORMAT.to_dict(),
            description="Demo mother/child minimal pairs (length-matched, no overlap).")
        insert_pairs(store, childes.id, _with_split(read_childes_csv(childes_text), 0.8))
        chat = create_dataset(
            store, "demo-instruct", recipe={"source": f"assets/{INSTRUCT_PAIRS}"},
            prompt_format=CHAT_FORMAT.to_dict(),
            description="Demo instruction pairs: helpful answers vs curt or wrong ones.")
        pairs = [Pair(prompt=r["prompt"], chosen=r["chosen"], rejected=r["rejected"],
                      source="demo") for r in instruct]
        insert_pairs(store, chat.id, _with_split(pairs, 0.9))
    return [childes.name, chat.name]


def main() -> None:
    """Regenerate assets/ from the fixed seed."""
    for path in write_assets():
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
