"""darkseg.engine"""
