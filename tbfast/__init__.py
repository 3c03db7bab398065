"""tbfast"""
