"""darkseg.raw"""
