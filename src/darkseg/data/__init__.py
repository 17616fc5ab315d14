"""darkseg.data"""
