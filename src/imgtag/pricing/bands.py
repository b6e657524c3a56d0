"""A run's requests as an estimate prices them: in the standard or the long-context band, each by its own prompt.

A model's long-context threshold is a rule about one request (api-facts F: Haiku 5.5 bills every token of a request
whose input + cache reads + cache writes pass 100,000 at its long rates), never about a run's total. So the estimate
forms the run's requests as the engine and the batch flow do, `per_request` images at a time in the order they come
(request/gather.py; the last request may be short), and puts each in its band from that request's own prompt: its
images, their labels, and the text every request carries (schema, system prompt, instruction: cached or not, cache
reads and writes count toward the threshold too). The bands keep sums only, so a million images cost no memory.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from imgtag.pricing.costs import is_long
from imgtag.pricing.model_info import Prices


@dataclass(frozen=True)
class Band:
    """The requests of a run that are priced alike."""

    requests: int = 0
    images: int = 0
    image_tokens: int = 0

    def plus(self, images: int, image_tokens: int, times: int = 1) -> Band:
        """`times` more requests of `images` images holding `image_tokens` between them."""
        return Band(self.requests + times, self.images + images * times, self.image_tokens + image_tokens * times)


@dataclass
class Bands:
    prices: Prices | None
    per_request: int  # images per request (--images-per-request)
    request_text: int  # prompt tokens every request carries besides its images and labels
    label: int  # prompt tokens a labelled image adds to a pack ("Image 3:"), 0 unpacked
    standard: Band = field(default_factory=Band)
    long: Band = field(default_factory=Band)
    first_long: bool | None = None  # the band of the run's first request, which writes the cached prefix
    open_images: int = 0  # the request being filled
    open_tokens: int = 0

    def add(self, image_tokens: int, times: int = 1) -> None:
        """`times` images of this size, one after another."""
        if self.per_request <= 1 and times > 1:
            # One image per request: every request alike, so priced as one and counted `times` (a million images'
            # estimate in `status` is then one step per distinct size, not per image).
            self.open_images, self.open_tokens = 1, image_tokens
            self._close(times)
            return
        for _ in range(times):
            self.open_images += 1
            self.open_tokens += image_tokens
            if self.open_images >= self.per_request:
                self._close()

    def closed(self) -> Bands:
        """The bands with the request being filled sent as it is (the run's last, short request)."""
        done = dataclasses.replace(self)
        if done.open_images:
            done._close()
        return done

    def _close(self, times: int = 1) -> None:
        prompt = self.open_tokens + self.open_images * self.label + self.request_text
        long = self.prices is not None and is_long(self.prices, prompt)
        if long:
            self.long = self.long.plus(self.open_images, self.open_tokens, times)
        else:
            self.standard = self.standard.plus(self.open_images, self.open_tokens, times)
        if self.first_long is None:
            self.first_long = long
        self.open_images = self.open_tokens = 0
