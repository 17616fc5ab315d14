"""darkseg.models"""
