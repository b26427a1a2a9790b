// Keep the newest message in view while the reader is at the bottom; once they scroll up to
// read, leave them there and offer a "new message" pill instead of yanking the view.
//
// Growth is watched with a ResizeObserver rather than measured around each change: a reply
// grows by streamed text, its sources, an offer, a late attachment preview or an image, and
// every one of those must keep the bottom in view (measuring before and after each change
// missed some and left the answer below the fold).

const SLACK = 48; // px from the bottom that still counts as "at the bottom"

export class Stickiness {
  constructor(scroller, content, pill) {
    this.scroller = scroller;
    this.content = content;
    this.pill = pill;
    this.stuck = true;
    this.expected = null; // the scrollTop we set last: its scroll event is ours, not the reader's
    scroller.addEventListener('scroll', () => this.onScroll(), { passive: true });
    const observer = new ResizeObserver(() => { if (this.stuck) this.pin(); });
    for (const child of scroller.children) observer.observe(child);
    observer.observe(scroller);
    if (pill) pill.addEventListener('click', () => { this.toEnd(); });
  }

  distance() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight;
  }

  onScroll() {
    if (this.expected !== null && Math.abs(this.scroller.scrollTop - this.expected) < 2) return;
    this.expected = null;
    this.stuck = this.distance() <= SLACK;
    if (this.stuck) this.hidePill();
  }

  pin() {
    if (this.distance() > 1) {
      this.scroller.scrollTop = this.scroller.scrollHeight;
      this.expected = this.scroller.scrollTop;
    }
  }

  /** Go to the newest message and follow from now on (sending, the pill, a new conversation). */
  toEnd() {
    this.stuck = true;
    this.hidePill();
    this.pin();
  }

  /** A message or notice was added: followed when at the bottom, else announced by the pill
   * (our own sends then call toEnd, which hides it again). */
  added() {
    if (this.stuck) {
      this.pin();
      return;
    }
    if (this.pill) this.pill.hidden = false;
  }

  hidePill() {
    if (this.pill) this.pill.hidden = true;
  }
}
