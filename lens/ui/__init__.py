"""What the app shows and does, without gradio: typed screens, the actions behind its events, its public
API, the model sets, examples, uploads and start-up. May import: everything of lens below it (not
lens.cli, not the face)."""
