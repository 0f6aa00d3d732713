"""What the word lists cannot list one by one: nudity the scene implies ("wearing only his hat
and boots"), and fantasy monsters killed without gore (glued words are ``moderation.glued``'s).

- Implied nudity: "wearing only/just/nothing but" followed by nothing but accessories (a hat,
  boots, earrings, a smile), or "covering himself with just a guitar": the person is naked.
- Fantasy: beheading a dragon or decapitating a hydra is mild fantasy violence; the same words
  about a person, or with graphic detail (another gore word), still read as gore.
"""

from __future__ import annotations

import re

# Things worn that cover nothing: "wearing only X" with nothing else leaves the person naked.
_ACCESSORIES = (
    "hat|hats|cap|crown|tiara|helmet|boots|boot|shoes|heels|high heels|sneakers|sandals|socks|"
    "stockings|earrings|earring|necklace|necklaces|jewelry|jewellery|jewels|pearls|ring|rings|"
    "bracelet|bracelets|watch|wristwatch|glasses|sunglasses|spectacles|tie|bow tie|necktie|"
    "gloves|scarf|choker|collar|garter|garters|belt|mask|headphones|veil|smile|grin|perfume|"
    "tattoos|tattoo|body paint|paint|makeup|lipstick|apron|guitar|flowers|a flower|leaves|"
    "a leaf|fig leaf|shadows|sunlight|moonlight|bubbles|foam|soap suds|a sheet|a pillow"
)
_ONLY = r"(?:only|just|nothing but|nothing except|nothing other than|naught but)"
# Up to five words before each item ("a pair of black cowboy", "his"); never a conjunction, so
# a garment before "and" cannot pass as a filler ("only a dress and a hat"), nor a garment
# ("wearing only black, black coat, black boots").
_FILLER = (
    r"(?:(?!(?:and|or|with|plus|but|coat|coats|jacket|jackets|dress|shirt|pants|trousers|jeans|"
    r"skirt|sweater|suit|gown|top|blouse|jumper|hoodie|cardigan|overcoat|parka)\s)[a-z]+\s){0,5}?"
)
_ITEM = rf"{_FILLER}(?:{_ACCESSORIES})"
# Items only worn, for the form without a verb ("with just his guitar" is a busker).
_WORN = (
    r"(?:[a-z]+ )?(?:hat|hats|cap|crown|tiara|helmet|boots|shoes|heels|high heels|sneakers|"
    r"sandals|socks|stockings|earrings|necklace|pearls|jewelry|jewellery|gloves|choker|collar|"
    r"garters|veil|tattoos|body paint|apron)"
)
# After "only X on", words that make "on" a place, not worn: "only a hat on the table".
_NOT_WORN = r"(?:the|a|an|his|her|their|its|it|them|top|sale|display|show|offer)\b"
_IMPLIED = re.compile(
    rf"\b(?:(?:wearing|wears|wear|wore|dressed in|clad in|in|has on|had on) {_ONLY}"
    rf"|{_ONLY} (?:wearing|wears|wore|in)|dressed only in|clad only in)\s"
    rf"{_ITEM}(?:\s(?:and|or|with|plus)\s{_ITEM})*(?=$|\s(?!(?:and|or|with|plus)\s))"
    rf"|\b(?:with )?{_ONLY}\s{_ITEM}(?:\s(?:and|or|with|plus)\s{_ITEM})* on\b(?!\s{_NOT_WORN})"
    # "with just her hat and boots": the possessive makes the items the person's only clothes.
    rf"|\bwith {_ONLY} (?:her|his|their) {_WORN}(?:\s(?:and|or)\s(?:her |his |their )?{_WORN})*"
    rf"(?=$|\s(?!(?:and|or|with|plus)\s))"
    rf"|\bcover(?:ing|s|ed)? (?:himself|herself|themselves|his body|her body|their bodies|"
    rf"his privates|her privates|his modesty|her modesty) (?:with|behind) {_ONLY}\s"
    # The towel the person would wear lies or hangs elsewhere: "his towel hanging on the hook".
    rf"|\b(?:her|his|their) towel (?:is |was )?(?:still )?(?:lying |lies |left |dropped |"
    rf"fallen |hanging |hung |hangs |tossed |thrown |discarded )?(?:on|at|from|over) (?:the|a) "
    rf"(?:bathroom |bedroom |sauna |shower |wooden )?(?:floor|hook|peg|bench|chair|door|rail)"
)
# About a person, these leave nothing on ("woman covered only by a bedsheet", "wrapped in a sheet,
# nothing underneath"); about a thing they are ordinary ("a car covered only by a tarp").
_ON_A_PERSON = re.compile(
    r"\b(?:covered|clothed|hidden) only (?:by|with|in)\b|\bonly covered (?:by|with|in)\b"
    r"|\b(?:wearing )?nothing (?:underneath|under it|beneath)\b"
)
# In a bath, the foam that covered the bather gone: "after the foam has melted away".
_BATH = re.compile(r"\b(?:bath|bathtub|bathtubs|tub|bubble bath|jacuzzi)\b")
_FOAM_GONE = re.compile(
    r"\b(?:foam|bubbles|suds) (?:has |have |had )?(?:all )?(?:melted|dissolved|popped|cleared|"
    r"vanished|disappeared|gone)"
)


# Garments that leave the person bare when they lie or hang elsewhere.
_GARMENTS = (
    r"clothes|clothing|dress|dresses|gown|swimsuits?|bikinis?|swimwear|bathing suits?|"
    r"swim trunks|trunks|underwear|lingerie|panties|bra|bras|boxers|briefs|robe|robes|"
    r"bathrobe|kimono|shirt|blouse|jeans|pants|trousers|skirt|shorts|towel|towels|nightgown|"
    r"nightie|pajamas|pyjamas|outfit|outfits|garments|leotard|uniform|sarong|thong|sundress|"
    r"yukata|sweater|jumper|hoodie|costume|underthings|top|bottoms|tank top|wetsuit|overalls|"
    r"tee|t shirt|bodysuit|slip|camisole|undies|knickers|speedo|speedos|socks"
)
# A garment slid off that lies at the person's feet: "the robe slides off and pools at her feet".
_AT_FEET = re.compile(
    r"\b(?:slid|slides|slide|sliding|slipped|slips|slipping|dropped|drops|dropping|fell|falls|"
    r"falling|fallen|pulled|peeled|shed|discarded)\b.{0,40}?\b(?:pools?|pooled|pooling|lies|lying|"
    r"lay|crumpled|heaped|in a heap|gathers|gathered) (?:at|around|by) (?:her|his|their) "
    r"(?:feet|ankles)\b"
)
# The cover of a woman's chest slid down below it: "the bedsheet slid down to her waist".
_BELOW_CHEST = re.compile(
    r"\b(?:sheet|bedsheet|blanket|duvet|towel|robe|dress|top|gown) (?:has |had )?(?:slid|slides|"
    r"slipped|slips|fallen|fell|falls|pulled|peeled|rolled) down (?:to|around|past) her "
    r"(?:waist|hips|belly|navel|stomach)\b"
    # "wrapped in a bedsheet that is slipping off her body"
    r"|\b(?:sheet|bedsheet|blanket|duvet|towel|robe|bathrobe|foam|bubbles|suds|soap suds|lather) "
    r"(?:that |which )?(?:is |was |are |were )?"
    r"(?:slipping|sliding|falling|slips|slides|falls|slid|slipped|fell) (?:right )?off "
    r"(?:her|his|their) (?:body|bodies|chest|breasts|hips)\b"
)
# A person's garments, one or a list ("her jeans and blouse", "his shirt trousers and boxers").
# What leaves a person bare when it alone is elsewhere (not "his tee", "her hoodie", "her top").
_BARE_WHEN_GONE = (
    r"bikini top|bikini bottoms?|swim shorts|shorts|boardshorts|clothes|clothing|dress|dresses|"
    r"gown|swimsuits?|bikinis?|swimwear|bathing suits?|"
    r"swim trunks|trunks|underwear|lingerie|panties|bra|bras|boxers|briefs|robe|robes|bathrobe|"
    r"kimono|yukata|towel|towels|nightgown|nightie|pajamas|pyjamas|garments|leotard|sarong|"
    r"thong|sundress|underthings|bodysuit|undies|knickers|speedo|speedos"
)
# One garment: an adjective at most, read atomically, so a run of garment words cannot make the
# engine try every way to split it ("her shirt shirt shirt …" took minutes).
_ONE = rf"(?>(?:[a-z]+ )?(?:{_GARMENTS})\b)"
_OWNER = r"\b(?:her|his|their|(?:the |a )?[a-z]+ s) "
# A person's garments: two or more of any kind ("her jeans and blouse", "the man s shirt jeans
# and boxers"), or one that leaves them bare ("her nightgown", "his yukata").
_OWNED_GARMENTS = (
    rf"{_OWNER}(?:{_ONE}(?: (?:and |or )?(?:her |his |their )?{_ONE})++"
    rf"|(?>(?:[a-z]+ )?(?:{_BARE_WHEN_GONE})\b))"
)
# A garment that slid down to the feet: "her dress slides down to her ankles".
_DOWN_TO_FEET = re.compile(
    rf"\b(?:{_BARE_WHEN_GONE}|skirt|jeans|pants|trousers|shorts)\b (?:[a-z]+ ){{0,2}}?"
    # not "a long skirt that falls to her ankles": its length
    # moved, not its length: not a gown that "pools at her feet" or "falls down to her ankles"
    r"(?:slid|slides|sliding|slipped|slips|fell|dropped|drops) "
    r"(?:down )?(?:to|around|at) (?:her|his|their) (?:feet|ankles)\b"
)
# A garment on the floor by the person seen in full or facing us: "towel on the floor behind her"
# (not a beach towel on the sand).
# Underwear anywhere; a towel or robe only after a bath or shower (not beside a gymnast), never
# clothes or pajamas laid out on a bed.
_ON_FLOOR_BY = re.compile(
    r"\b(?:underwear|lingerie|panties|bra|bikini|swimsuit|boxers|briefs|thong|knickers|undies|"
    r"(?P<wet>towel|robe|bathrobe)) (?:is |lying |lies |left |dropped |tossed )?(?:on|at) the "
    r"(?:floor|carpet|rug|tiles|bed) (?:behind|beside|next to|near) (?:her|him|them)\b"
)
_SHOWER = re.compile(r"\b(?:shower|showered|bath|bathtub|bathroom|sauna|onsen|tub)\b")
# The person's garment somewhere else ("their swimsuits hanging on a branch", "her bikini drying
# on the railing"): with the whole body in view the person is bare. Clothes on a line with no
# person, or a robe on a hook in an empty room, are no one's.
_WORN_ELSEWHERE = re.compile(
    rf"{_OWNED_GARMENTS} (?:is |are |was |were |now |left )?"
    r"(?:hanging|hangs|hung|drying|dries|draped|lying|lies|lay|left|folded|piled|tossed|thrown|"
    r"discarded|strewn|abandoned|scattered|floating|floats|float|caught|snagged|in a heap|"
    r"fell|falls|dropped|drops|slid|slipped|drift|drifts|drifting|drifted|washed|swept) "
    r"(?:on|onto|to|over|from|across|beside|by|in|at|nearby|on the|far|up|under|among|away|"
    r"behind)\b"
)
# The garment lying beside its owner: "her bikini lying on the sand next to her"; unowned, only
# what no one leaves beside them dressed ("bikini lying beside her", not a towel), and only
# beside the person, not their things ("beside her, full body", not "beside her suitcase").
_BARING_GARMENTS = (
    r"bikini|bikinis|swimsuit|swimsuits|bathing suit|underwear|lingerie|panties|bra|thong|"
    r"swim trunks|trunks|boxers|briefs|knickers|undies|clothes|clothing|dress"
)
_LYING_BESIDE = (
    r" (?:is |are |was |were |now )?(?:all |both )?(?:(?:lying|lies|lay|folded|piled|tossed|"
    r"thrown|discarded|draped|heaped) (?:[a-z]+ ){0,5}?|on the (?:floor|ground|carpet|rug|sand|"
    r"tiles) )(?:beside|next to) (?:her|him|them)"
)
_BESIDE_OWNER = re.compile(
    rf"{_OWNED_GARMENTS}{_LYING_BESIDE}\b"
    rf"|\b(?:the |a )?(?:{_BARING_GARMENTS})(?: top and bottoms?| top and bottom| bottoms?| tops?)?"
    rf"{_LYING_BESIDE}"
    r"(?=$|\s(?:on|in|at|as|while|and|or|full|front|facing|face|she|he|they|the|a|an|with|under|"
    r"by|near|sleeps|sleeping|lies|lying|sits|sitting|stands|standing|is|was|photo|realistic)\b)"
)
# The garment simply somewhere that is no place to wear it ("her nightgown on the carpet", "his
# yukata on the peg"); not "in her dress on the dock" or "lying on her towel on the sand".
_PLACED = re.compile(
    r"(?<!\bin )(?<!\bon )(?<!\binto )(?<!\bunder )(?<!\bwearing )(?<!\bwears )(?<!\bwore )"
    rf"{_OWNED_GARMENTS} (?:is |are |was |were )?(?:all |both )?(?:still )?"
    r"(?:on|over|across|at|in) (?:the|a) (?:[a-z]+ )?(?:floor|"
    r"carpet|rug|chair|hook|peg|rail|railing|clothesline|dock|pier|sand|deck|banister|bench|"
    r"ground|grass|rocks|shore|mat|heap|pile|screen|stool|easel|rack|coat rack|door|branch|"
    r"surface|umbrella|lamp|chest)\b"
)
# The person left or shed the garment, or lost it ("leaves her sundress on the dock", "having
# hung his clothes on the coat rack", "the wind blew away her skirt").
_LEFT_OFF = re.compile(
    rf"\b(?:left|leaves|leaving|shed|sheds|shedding|tossed|tosses|tossing|having hung|has hung|"
    rf"(?:blew|blows|blown|blowing|swept|sweeps|carried|carries|washed|washes|took|takes) away|"
    rf"stole|steals|stolen) {_OWNED_GARMENTS}"
)
# The garment at the person's feet, fallen: "the woman's towel lies at her feet", "her dress at
# her feet" (not "her skirt swirling around her ankles").
_AT_OWN_FEET = re.compile(
    rf"(?:{_OWNED_GARMENTS}|\bthe [a-z]+s (?:{_GARMENTS})) (?:is |now )?"
    r"(?:(?:lies|lying|lay|pooled|pools|pooling|crumpled|bunched|in a heap|heaped)"
    r"(?: in a (?:pile|heap))? (?:at|around)|at) (?:her|his|their) (?:feet|ankles)\b"
)
# A garment still on its hook or door while the person is out of the bath ("bathrobe still on
# the door", "towel still hanging on the rail").
_STILL_HUNG = re.compile(
    rf"\b(?:{_GARMENTS}) (?:is |are )?still (?:hanging |hung |folded |lying |draped )?"
    r"(?:on|at|over|by) (?:the|a) (?:[a-z]+ )?(?:hook|door|peg|rail|rack|chair|bench|line)\b"
)
_WET_PLACES = re.compile(
    r"\b(?:bath|bathtub|tub|shower|pool|sauna|onsen|hot spring|hot tub|lake|river|sea|bathhouse|"
    r"plunge pool|spa)\b"
)
# Facing whoever looks: with a garment elsewhere, the person is seen bare.
_FACING = re.compile(
    r"\b(?:facing|faces|face|turns? to|turning to|turned to|toward|towards|walks toward|"
    r"turning toward|waving at|waves at|smiling at|smiles at|looking at|looks at|posing in front "
    r"of|poses in front of) (?:the )?(?:camera|viewer|viewers|us|mirror|crowd|audience|lens)\b"
    r"|\bfront (?:view|facing|on)\b|\bfull frontal\b"
)
# Something held or lying on the person is "the only thing on her"; "the only thing she is
# wearing is her necklace".
_ONLY_THING = re.compile(
    r"\b(?:is|are|was) the only thing (?:on|covering) (?:her|him|them)\b"
    rf"|\bthe only thing (?:she|he|they) (?:is |s |are )?(?:wearing|wears|has on) (?:is|are) "
    rf"{_ITEM}\b"
)
# Seeing through the person's clothes: "x-ray vision seeing right through her dress".
_SEE_THROUGH = re.compile(
    rf"\b(?:see|sees|seeing|saw|seen|looking|looks) (?:right )?through (?:her|his|their) "
    rf"(?:[a-z]+ )?(?:{_GARMENTS})\b|\bx ray (?:vision|glasses|specs|goggles)\b"
)
# Skin as the clothes: "her outfit today is her skin".
_SKIN_AS_CLOTHES = re.compile(
    r"\b(?:outfit|outfits|clothes|clothing|costume|attire)(?: today| tonight)? (?:is|are|was) "
    r"(?:her|his|their) (?:own |bare )?skin\b"
    # "her only outfit is a thin layer of chocolate syrup", "his only clothing is body paint"
    r"|\b(?:her|his|their) only (?:outfit|outfits|clothes|clothing|covering|attire|garment) "
    r"(?:is|are|was|were) (?:a |an |some )?(?:thin |light |fine |thick )?"
    r"(?:(?:layer|layers|coat|coating|film|sheen|smear|drizzle|dusting|splash) of\b|body paint\b|"
    r"paint\b|glitter\b|mud\b|foam\b|bubbles\b|oil\b|whipped cream\b|chocolate\b|syrup\b|"
    r"honey\b|leaves\b|flowers\b|petals\b|(?:her|his|their) (?:hair|tattoos|skin)\b|a smile\b)"
)
# The person covers the body with the hands: "hiding her chest with her hands", or the rest of
# them is bare: "holding a pillow in front of her body, the rest of her bare".
# Hands over a woman's chest or anyone's crotch ("hiding her chest with her hands"); arms only
# over what is said to be bare ("covering her breasts with her arms"), not a chest hugged in
# the cold or a hand on the heart.
_HANDS_OVER = re.compile(
    r"\b(?:using|uses|with) (?:her|his|their) (?:two |both |bare )?(?:hands|arms) to (?:cover|hide|"
    r"shield|cup) (?:her (?:chest|breasts)|(?:her|his|their) (?:crotch|groin|privates|"
    r"private parts))\b"
    r"|\b(?:hiding|hides|hid|covering|covers|covered|shielding|shields|cupping|cups) "
    r"(?:her (?:chest|bare chest)|(?:her|his|their) (?:crotch|groin|privates|private parts|nudity|"
    r"naked body|bare body|modesty|bare chest)) with (?:her|his|their|both|one) (?:hands?|palms?)\b"
    r"|\b(?:hiding|hides|hid|covering|covers|covered|shielding|shields|cupping|cups) "
    r"(?:her breasts|(?:her|his|their) (?:nudity|naked body|bare body|bare chest|privates|"
    r"private parts|crotch|groin)) with (?:her|his|their|both|one) (?:arms?|hands?|palms?)\b"
    r"|\bthe rest of (?:her|her body|his body) (?:is |was |left )?"
    r"(?:bare|exposed|uncovered|naked|on show|on display)\b(?! (?:to (?!the camera|the viewer|"
    r"the lens|us\b)|arms?|legs?|feet|foot|back|shoulders?|skin|hands?|face|head|neck|wrists?|"
    r"ankles?|knees?|toes?|midriff)\b)"
    r"|\bthe rest of (?:him|them) (?:is|was|are|were) (?:bare|naked)\b"
    # "her hands over her chest", "his hands over his crotch"
    r"|\b(?:her|both) hands (?:held |cupped |crossed )?over her (?:chest|breasts)\b"
    r"|\b(?:his|her|their|both) hands (?:held |cupped )?over (?:his|her|their) (?:crotch|groin|"
    r"privates|private parts)\b"
    # "her towel falling off", "his towel slipped down"
    r"|\b(?:her|his|their) towel (?:is |was )?(?:falling|fell|falls|slipping|slips|slipped|"
    r"dropping|dropped|drops|sliding|slid|slides) (?:off|down|away)\b"
    # "hiding behind a single fig leaf"
    r"|\b(?:behind|with|wearing|covered by|in) (?:only |just )?(?:a |one |a single )?fig leaf\b"
)
_FULL_BODY = re.compile(
    r"\b(?:full body|full bodied|fullbody|full length|full figure|whole body|entire body|"
    r"head to toe|full view|full shot|wide shot|seen from above|from above|overhead|top down)\b"
)
# A censor over the private parts: "mosaic censor on his groin", "star stickers over her nipples".
_CENSOR_ON = re.compile(
    r"\b(?:mosaic|censor|censored|censorship|pixelated|pixelation|pixels|blur|blurred|bar|bars|"
    r"sticker|stickers|emoji|emojis) (?:[a-z]+ )?(?:on|over|covering|hiding) (?:her|his|their) "
    r"(?:groin|crotch|privates|private parts|genitals|genital area|nipples|breasts|bits|"
    r"intimate parts|lower half|lower body|body|hips|chest|chest and groin|chest and crotch|"
    r"chest and hips)\b"
    # "pixelated private parts", "censored nipples"
    r"|\b(?:pixelated|pixellated|blurred|censored|mosaiced|mosaic) (?:out )?(?:private parts|"
    r"privates|genitals|nipples|crotch|groin|intimate parts)\b"
    # "where a bikini would be", "two flowers held where her bra should be"
    r"|\bwhere (?:a|her|his|their) (?:bikini|bikini top|bra|underwear|panties|swimsuit|"
    r"clothes|briefs|boxers|top) (?:would|should) (?:be|have been)\b"
)
# A censored picture of a bather: "mosaic-pixelated photo of a woman in a shower".
_CENSORED_BATH = re.compile(
    r"\b(?:mosaic|pixelated|pixellated|censored|censor bars?|blurred out)\b(?:\s[a-z]+){0,6}?"
    r"\s(?:in|under|taking) (?:a |the |her |his )?(?:shower|bath|bathtub|sauna|onsen|hot spring)\b"
)
# Nothing at all covering the body: "no fabric anywhere on her body", "nothing on his skin".
_BARE_BODY = re.compile(
    r"\b(?:no|not a|not one|not a single|without a|without any|without) (?:fabric|cloth|clothing|"
    r"thread|stitch|garment|scrap of (?:fabric|cloth|clothing))s? (?:anywhere )?(?:on|covering) "
    r"(?:(?:her|his|their) (?:body|bodies|skin|figure)\b|(?:her|him|them)\b(?! (?:[a-z]+ )?"
    r"(?:shoulders?|arms?|head|hair|face|feet|legs?|hands?|back|neck|wrists?|waist)\b))"
    r"|\bnothing (?:at all )?(?:on|covering) (?:her|his|their) (?:body|bodies|skin)\b"
    r"|\bwith nothing on\b(?! (?:it|them|its|the|top|tv|a|an|display|screen|show|offer))"
)
# A bather whose bath has nothing in the water to cover them: "a bathtub with no bubbles,
# crystal clear water".
_CLEAR_BATH = re.compile(
    r"\b(?:no|without|zero) (?:bubbles|foam|suds|bubble bath)\b|\bbubble free\b"
    r"|\b(?:crystal clear|clear|transparent|see through|glass clear) water\b"
)


_WORN_THING = re.compile(rf"\b(?:{_ACCESSORIES}|{_GARMENTS}|lace|silk|satin|leather|latex)\b")


_NOTHING_ON = re.compile(
    r"\bnothing (?:else )?on\b(?! (?:it|them|its|the|a|an|top|tv|display|screen|show|offer)\b)"
    r"|\bnothing (?:underneath|under it|beneath|under)\b"
)


def worn(plain: str) -> bool:
    """Whether the prompt names a thing worn (a garment, an accessory, a fabric) or says
    nothing is: "stockings and nothing else", "with nothing else on" are about a person, even
    with no word for one."""
    return _WORN_THING.search(plain) is not None or _NOTHING_ON.search(plain) is not None


def _on_floor_by(plain: str) -> re.Match[str] | None:
    found = _ON_FLOOR_BY.search(plain)
    if found is not None and found["wet"] and not _SHOWER.search(plain):
        return None
    return found


def implied_nudity(plain: str, *, person: bool) -> str | None:
    """The words that make a person naked without a nudity word, in the plain reading; the
    reading has no commas, so an item list ends at a word that starts the rest of the scene.
    ``person``: whether the prompt names a person (some of these are ordinary about things)."""
    found = _IMPLIED.search(plain) or _ONLY_THING.search(plain) or _SKIN_AS_CLOTHES.search(plain)
    if found is None and person:
        found = (
            _ON_A_PERSON.search(plain) or _AT_OWN_FEET.search(plain) or _SEE_THROUGH.search(plain)
        )
    if found is None and _BATH.search(plain):
        found = _FOAM_GONE.search(plain)
        if found is None and person and _FULL_BODY.search(plain):
            found = _CLEAR_BATH.search(plain)
    if found is None and person:
        found = (
            _AT_FEET.search(plain)
            or _BARE_BODY.search(plain)
            or _CENSOR_ON.search(plain)
            or _HANDS_OVER.search(plain)
            or _CENSORED_BATH.search(plain)
        )
    if found is None and person and (_FULL_BODY.search(plain) or _FACING.search(plain)):
        found = _DOWN_TO_FEET.search(plain)
    if found is None and person and (_FULL_BODY.search(plain) or _FACING.search(plain)):
        found = (
            _WORN_ELSEWHERE.search(plain)
            or _PLACED.search(plain)
            or _LEFT_OFF.search(plain)
            or _on_floor_by(plain)
        )
    if found is None and person and (_WET_PLACES.search(plain) or _FACING.search(plain)):
        found = _STILL_HUNG.search(plain)
    if found is None:
        found = _BESIDE_OWNER.search(plain) or _BELOW_CHEST.search(plain)
    return found.group().strip() if found else None


# Killing a fantasy creature is mild fantasy violence (the policy's "a knight fighting a dragon").
_KILLING = ("behead", "beheads", "beheaded", "beheading", "decapitat", "slay", "slain", "slaying")
_CREATURES = (
    r"dragons?|wyverns?|hydras?|goblins?|orcs?|trolls?|ogres?|zombies?|skeletons?|undead|"
    r"monsters?|demons?|kraken|basilisks?|gorgons?|medusa|minotaurs?|giants?|beasts?|liches?|"
    r"wraiths?|ghouls?|vampires?|werewolf|werewolves|serpents?|chimeras?|cyclops|golems?|"
    r"dinosaurs?|aliens?|robots?|mechs?|slimes?|imps?|manticores?|griffins?|behemoths?"
)
# Between a killing word and a creature, no people: "beheading prisoners orc army".
_HUMANS = (
    r"(?:m[ae]n|wom[ae]n|child|children|kids?|babies|baby|prisoners?|people|persons?|boys?|"
    r"girls?|soldiers?|civilians?|villagers?|hostages?|captives?|victims?|humans?)"
)
_FANTASY_KILL = re.compile(
    rf"\b(?:behead|decapitat|slay|slain|kill)[a-z]* (?:(?!{_HUMANS}\b)[a-z]+ ){{0,3}}?"
    rf"(?:{_CREATURES})\b"
    rf"|\b(?:{_CREATURES}) (?:is |was |being |gets |got )?(?:behead|decapitat|slain)[a-z]*"
)
_KILLING_WORD = re.compile(r"\b(?:behead|decapitat|slay|slain|kill)[a-z]*")


def fantasy_only(plain: str, gore_terms: list[str], cue: str | None = None) -> bool:
    """Whether every gore word is about killing a fantasy creature, with no graphic detail:
    each killing word, where it stands, inside a match of a creature killed ("soldiers beheading
    prisoners, orc army" is not). With ``cue`` (the classifier's top gore cue), that too."""
    matches = [found.span() for found in _FANTASY_KILL.finditer(plain)]
    if not matches or not all(term.startswith(_KILLING) for term in gore_terms):
        return False

    def inside(start: int, end: int) -> bool:
        return any(first <= start and end <= last for first, last in matches)

    if not all(inside(*word.span()) for word in _KILLING_WORD.finditer(plain)):
        return False
    if cue is None:
        return True
    return any(
        inside(at.start(1), at.end(1))
        for at in re.finditer(rf"(?<!\S)({re.escape(cue)})(?!\S)", plain)
    )
