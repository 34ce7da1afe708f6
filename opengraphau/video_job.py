"""The video part of a run: one video or camera at a time, from the engine's batches of frames
to rows, the per-track summary, the annotated video, the live preview and the AU timeline."""

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING

import numpy as np

from .aus import AU_IDS
from .errors import OutputError, VideoError, describe
from .records import UNCONFIRMED, FaceRecord, VideoInfo, display_name
from .sources.inputs import InputItem

if TYPE_CHECKING:
    from .context import RunContext
    from .engines import Engine
    from .render.video import VideoWriter


class VideoJob:
    """Runs the videos of one run, sharing its files, counts and reporter (`RunContext`)."""

    def __init__(self, run: RunContext) -> None:
        self.run = run
        self.undrawable: set[str] = set()
        """Videos whose annotated copy stopped at a frame that could not be drawn."""

    def __call__(self, engine: Engine, item: InputItem) -> None:
        """One video or camera. Whatever goes wrong with it alone is its line in errors.csv and
        the run goes on.

        A video file is marked completed only when it was read to its end or its damage, so a
        resumed run redoes one that failed otherwise or that the user stopped (q in the
        preview). A camera's rows are a recording that cannot be made again: it is marked
        completed however it stopped (q, --max-frames, Ctrl-C), so a resumed run keeps them.
        """
        run, camera = self.run, item.kind == "webcam"
        try:
            error, stopped = self._stream(engine, item)
        except OutputError:
            raise
        except VideoError as exc:
            run.fail(item.path, exc.reason)
            return
        except Exception as exc:  # noqa: BLE001 - one input's failure must not end the run
            run.fail(item.path, f"could not be processed ({describe(exc)})")
            return
        except KeyboardInterrupt:
            if camera:
                run.writer.mark_completed([item.path])
            raise
        if error:
            run.fail(item.path, error)
        if camera or not stopped:
            run.writer.mark_completed([item.path])

    def _stream(self, engine: Engine, item: InputItem) -> tuple[str | None, bool]:
        """Rows, annotated video and timeline of one video: why it ended early (or None), and
        whether the user stopped it."""
        run = self.run
        timeline = _Timeline()
        stop = False
        with contextlib.ExitStack() as stack:
            stream = engine.video(item)
            stack.callback(stream.close)
            run.stats.videos += 1
            run.manifest.add_video(item.path, stream.info)
            run.summary.start()
            writer = self._video_writer(item, stream.info.fps) if run.options.draw else None
            if writer is not None:
                stack.callback(writer.close)
            if stream.info.is_camera:
                run.reporter.start_camera()
            run.reporter.start_video(item.path, self._expected(stream.info), stream.info.is_camera)
            stack.callback(run.reporter.end_video)
            stack.callback(self._plot_timeline, item, timeline)
            try:
                for outcomes in stream:
                    stop = self._frames_done(outcomes, writer, timeline)
                    run.stop_if_asked()
                    stop = stop or (stream.info.is_camera and run.reporter.stop_requested())
                    if stop:
                        break
            except BaseException:  # Ctrl-C, or this video failed: what is done is written
                with contextlib.suppress(Exception):
                    self._frames_done(stream.flush(), writer, timeline)
                raise
            if stop:  # the rows of faces still waiting for their ids, with what is known
                self._frames_done(stream.flush(), writer, timeline)
        run.summary.finish(item.path)
        return stream.error, stop

    def _expected(self, info: VideoInfo) -> int | None:
        from .sources.video import frames_kept

        o = self.run.options
        count = None if info.is_camera else info.frame_count
        return frames_kept(
            count, info.fps, every=o.every, start=o.start, end=o.end, max_frames=o.max_frames
        )

    def _video_writer(self, item: InputItem, fps: float) -> VideoWriter | None:
        from .render.video import VideoWriter

        rel = f"{item.stem}_pred.mp4"
        if not self.run.pictures.may_write(rel):
            return None
        return VideoWriter(self.run.pictures.folder.inside(rel), fps / self.run.options.every)

    def _frames_done(self, outcomes: list, writer: VideoWriter | None, timeline: _Timeline) -> bool:
        """Write a batch of video frames (all its rows, even past a frame where the user asked
        to stop in the preview); True when they did."""
        from .render.pictures import annotate_frame

        run, options = self.run, self.run.options
        rows: list[FaceRecord] = []
        stop = False
        for outcome in outcomes:
            rows.extend(outcome.records)
            run.count(outcome.records)
            run.stats.frames += 1
            timeline.add(outcome.frame.timestamp, outcome.records)
            path = outcome.item.path
            if not stop and (writer is not None or options.show) and path not in self.undrawable:
                try:
                    drawn = annotate_frame(
                        outcome.frame.image,
                        outcome.records,
                        threshold=options.au_thresholds,
                        title=run.title,
                    )
                    if writer is not None:
                        writer.write(drawn)
                except OutputError:
                    raise
                except Exception as exc:  # noqa: BLE001 - the rows go on without the drawing
                    self.undrawable.add(path)
                    run.warn(
                        f"{display_name(path)}: annotated video stopped at frame "
                        f"{outcome.frame.index} ({describe(exc)})"
                    )
                    continue
                if options.show and run.reporter.preview(drawn):
                    stop = True
        run.writer.write(rows)
        run.summary.add(rows)
        run.reporter.frames_done(len(outcomes))
        return stop

    def _plot_timeline(self, item: InputItem, timeline: _Timeline) -> None:
        options = self.run.options
        if not options.draw or not timeline.times:
            return
        from .render.plots import plot_timeline

        times = np.asarray(timeline.times)
        for n, (track, probs) in enumerate(timeline.people()):
            title = f"{display_name(item.path)} (face {track})"
            if self.run.title:
                title += f" - {self.run.title}"
            # The person seen longest keeps the plain name; each other one has a picture too.
            name = f"{item.stem}_aus.png" if n == 0 else f"{item.stem}_face{track}_aus.png"
            self.run.pictures.save(
                name,
                functools.partial(
                    plot_timeline, times, probs, threshold=options.au_thresholds, title=title
                ),
            )


#: A face gets its own timeline when seen in at least this share of the frames of the face seen
#: longest, up to this many faces per video.
PERSON_SHARE = 0.25
MOST_PEOPLE = 16


class _Timeline:
    """Per video: the frame times and, per track, its probabilities by frame (unconfirmed faces
    belong to no track)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.tracks: dict[int, dict[int, np.ndarray]] = {}

    def add(self, timestamp: float, records: list[FaceRecord]) -> None:
        self.times.append(timestamp)
        for record in records:
            if record.probs is not None and record.face_id != UNCONFIRMED:
                self.tracks.setdefault(record.face_id, {})[len(self.times) - 1] = record.probs

    def people(self) -> list[tuple[int, np.ndarray]]:
        """The faces worth a timeline, longest seen first, each with its probabilities by frame
        (NaN where it is absent): those seen in at least `PERSON_SHARE` of the frames of the
        longest one (a passer-by of a few frames is left out), at most `MOST_PEOPLE`."""
        ranked = sorted(self.tracks.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        if not ranked:
            return []
        least = PERSON_SHARE * len(ranked[0][1])
        people = []
        for track, seen in ranked[:MOST_PEOPLE]:
            if len(seen) < least:
                break
            probs = np.full((len(self.times), len(AU_IDS)), np.nan)
            for index, p in seen.items():
                probs[index] = p
            people.append((track, probs))
        return people
