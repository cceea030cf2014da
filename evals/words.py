"""Word lists written for this project: needle keys and values, filler sentences, stopwords.

Nothing here is copied from an existing dataset. Keys are `adjective-noun` pairs (about 30k of
them), values are single nouns, and the filler grammar mixes all lists so that BM25 sees the key
words in the haystack too (a realistic, harder setting than unique-word keys).
"""

from __future__ import annotations

ADJECTIVES = tuple(
    """
    able amber ancient angry arctic ashen autumn azure bare bashful bitter black bland blissful blue
    bold bouncy brave breezy brief bright brisk broad bronze brown bumpy busy calm candid careful
    cheerful chilly civic clever cloudy coastal cobalt cold colossal copper coral cosmic cozy crimson
    crisp crooked curious dainty damp daring dark dazzling deep dense dusty eager early earnest eastern
    elastic electric elegant emerald empty endless epic even exotic faded faint fancy fearless fertile
    fierce flat fluffy foggy fond formal fragile frozen frugal fuzzy gentle giant gilded glad glassy
    gloomy golden graceful grand gray green grumpy hasty hazy heavy hidden hollow honest humble hungry
    icy idle indigo ivory jagged jolly juicy keen kind lanky lavish lazy lemon level light little
    lively lofty lonely loud lucky lunar magenta marble mellow merry mighty misty modern modest molten
    muddy narrow nimble noble northern odd olive orange pale patient peaceful plain polar polished
    proud purple quick quiet rapid rare regal restless rigid ripe rocky rosy rough round royal rugged
    rustic rusty sandy scarlet secret serene shady shallow sharp shiny silent silver simple sleepy
    slender slow smoky smooth snowy soft solar solid sour southern spare spicy spotted steady steep
    sticky stormy striped sturdy sudden sunny swift tall tame tangled tawny tender thin thirsty tidy
    tiny tranquil tropical twisted urban valiant velvet vivid violet warm wary western wild windy wise
    wooden woolen yellow young zealous
    """.split()
)

NOUNS = tuple(
    """
    acorn anchor anvil apple arch arrow aspen atlas badger bagel balloon bamboo banner barn basket
    beacon beaver bell bench birch biscuit blanket boat bonnet boulder bramble bridge brook bucket
    buffalo button cabin cactus camel candle canoe canyon carpet castle cedar cellar chalk cherry
    chimney cider citadel clock clover cobra comet compass condor copper cottage cradle crane crater
    cricket crown crystal cupboard daisy dagger delta desert dolphin dragon drum eagle easel elbow
    ember engine falcon fern ferret fiddle fjord flame flute forest fossil fountain fox gable galaxy
    garden garnet geyser glacier goblet gondola granite griffin grove guitar hammer harbor harp hawk
    hazel helmet heron hill hive horizon hornet island ivy jackal jasmine jewel kettle kiln kite
    ladder lagoon lantern lark lemur lily lion lobster locket lotus lynx magnet mango maple marsh
    meadow meteor mill mirror mitten monsoon moose moth mountain mule needle nest nutmeg oak oasis
    ocean octopus olive orchard otter owl paddle palace panther parrot pebble pelican pepper pigeon
    pillar pine planet plum pond poppy prairie prism puffin quail quarry quartz quill rabbit raccoon
    raven reef ribbon ridge river robin rocket saddle salmon sapphire satchel scarab sequoia shadow
    shell shovel sparrow spider spire spruce squid stable star statue stone storm summit swan
    sycamore tablet temple thistle thunder tiger timber toad tower trellis trumpet tulip tundra
    turtle valley vessel violin volcano wagon walnut walrus wasp whale willow window wizard wolf
    yak zebra
    """.split()
)

VERBS = tuple(
    """
    admires borrows builds carries chases cleans collects counts crosses delivers draws follows
    gathers guards hides holds inspects juggles keeps lifts maps measures mends notices opens paints
    polishes pulls pushes repairs sells shares sketches sorts studies visits watches weighs
    """.split()
)

PREPOSITIONS = tuple(
    "above across after against along among around before behind below beneath beside "
    "beyond during inside near past through toward under within".split()
)

# Function words ignored when checking that a non-literal question shares no content word with its needle.
STOPWORDS = frozenset(
    """
    a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has
    have having he her here hers herself him himself his how i if in into is it its itself just me
    more most my myself no nor not now of off on once only or other our ours out over own same she
    should so some such than that the their theirs them themselves then there these they this those
    through to too under until up very was we were what when where which while who whom why will
    with would you your yours one someone something thing things whose
    """.split()
)

UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
