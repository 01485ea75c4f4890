"""Write the SDL: `python -m schema.export` (a test fails when the checked-in copy drifts)."""

from schema.root import SDL_PATH, export_sdl

if __name__ == "__main__":
    SDL_PATH.write_text(export_sdl())
    print(f"wrote {SDL_PATH}")
