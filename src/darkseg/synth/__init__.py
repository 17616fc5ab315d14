"""darkseg.synth"""
