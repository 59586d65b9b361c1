"""The synthetic replica's parts (synthetic.py is its command line and split writer):
scene (one image: render), layout (a number's glyphs), fonts (TrueType faces), digits (drawn
digit families), surfaces (walls, materials, light) and random (the shared draws)."""
