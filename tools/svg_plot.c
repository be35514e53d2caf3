/* svg_plot.c: writes a scatter plot as a standalone SVG document (see svg_plot.h): axes
 * with "nice" linear ticks or log-10 decades, light grid lines, one marker per point with
 * its label placed greedily where it overlaps no other label or marker. */
#include "svg_plot.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum {
  DEFAULT_W = 720, /* pixels */
  DEFAULT_H = 480,
  FONT_PX = 12,     /* label and tick font size */
  MARKER_R = 5,     /* marker radius, pixels */
  MAX_DECADES = 40, /* log axis span limit (keeps absurd inputs drawable) */
};

static const char* const k_palette[8] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                         "#9467bd", "#8c564b", "#e377c2", "#17becf"};

/* Axis-aligned rectangle in pixels (y grows downwards). */
typedef struct box {
  double x0, y0, x1, y1; /* left, top, right, bottom */
} box;

/* Mapping from data to pixels. */
typedef struct frame {
  double px0, px1; /* plot area, left and right pixel */
  double py0, py1; /* plot area, top and bottom pixel */
  double xlo, xhi; /* x axis range, data units */
  double xstep;    /* x tick spacing, data units */
  bool log;        /* y axis is log-10 */
  double ylo, yhi; /* y range: data units, or decades (log10) on a log axis */
  double ystep;    /* y tick spacing: data units, or decades per labelled tick */
} frame;

/* ---- text ------------------------------------------------------------------------------ */

/* Writes s with the five XML special characters escaped. */
static void xml_text(FILE* f, const char* s) {
  for (; s && *s; s++) {
    switch (*s) {
      case '&': fputs("&amp;", f); break;
      case '<': fputs("&lt;", f); break;
      case '>': fputs("&gt;", f); break;
      case '"': fputs("&quot;", f); break;
      case '\'': fputs("&apos;", f); break;
      default:
        if ((unsigned char)*s >= 0x20 || *s == '\t') fputc(*s, f);
    }
  }
}

/* Estimated rendered width of s in pixels at FONT_PX (sans-serif, ~0.58 em a character). */
static double text_width(const char* s) {
  int n = 0;
  for (; s && *s; s++)
    if (((unsigned char)*s & 0xC0) != 0x80) n++; /* count UTF-8 code points */
  return n * FONT_PX * 0.58;
}

/* ---- axes ------------------------------------------------------------------------------ */

/* Tick spacing of 1, 2 or 5 x 10^k giving about `ticks` intervals over span. */
static double nice_step(double span, int ticks) {
  double raw = span / ticks;
  double mag = pow(10.0, floor(log10(raw)));
  double norm = raw / mag;
  return (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
}

/* Linear axis covering [lo, hi] with a little padding, ends on multiples of the step;
 * does not go below zero when the data does not. */
static void linear_range(double lo, double hi, double* alo, double* ahi, double* step) {
  if (!(lo <= hi)) lo = 0, hi = 1;
  double span = hi - lo;
  if (span < 1e-12 * fmax(1.0, fabs(hi))) span = fmax(1.0, fabs(hi) * 0.2);
  double plo = lo - 0.06 * span, phi = hi + 0.06 * span;
  if (lo >= 0 && plo < 0) plo = 0;
  *step = nice_step(phi - plo, 8);
  *alo = floor(plo / *step) * *step;
  *ahi = ceil(phi / *step) * *step;
}

static bool point_ok(const svg_point* p, bool log) {
  return isfinite(p->x) && (isfinite(p->y) || (log && p->y < 0)); /* -inf clamps too */
}

static bool clamped(const svg_point* p, bool log) { return log && !(p->y > 0); }

/* Computes the axis ranges from the points. */
static void make_frame(const svg_scatter* s, int w, int h, frame* fr) {
  fr->log = s->y_log;
  double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
  bool any_clamped = false;
  for (int i = 0; i < s->n_points; i++) {
    const svg_point* p = &s->points[i];
    if (!point_ok(p, fr->log)) continue;
    xmin = fmin(xmin, p->x), xmax = fmax(xmax, p->x);
    if (clamped(p, fr->log))
      any_clamped = true;
    else
      ymin = fmin(ymin, p->y), ymax = fmax(ymax, p->y);
  }
  bool note = any_clamped && s->floor_note; /* a line under the x title */
  fr->px0 = 80, fr->px1 = w - 28, fr->py0 = 58, fr->py1 = h - (note ? 84 : 64);
  linear_range(xmin, xmax, &fr->xlo, &fr->xhi, &fr->xstep);
  if (!fr->log) {
    linear_range(ymin, ymax, &fr->ylo, &fr->yhi, &fr->ystep);
    return;
  }
  /* Decades: from the one holding the smallest positive value (one lower still when some
   * points sit on the floor, so they stand apart) to the one above the largest. */
  double dlo = ymin <= ymax ? floor(log10(ymin)) : -6;
  double dhi = ymin <= ymax ? ceil(log10(ymax)) : dlo + 1;
  if (any_clamped) dlo -= 1;
  if (dhi <= dlo) dhi = dlo + 1;
  if (dhi - dlo > MAX_DECADES) dlo = dhi - MAX_DECADES;
  fr->ylo = dlo, fr->yhi = dhi;
  fr->ystep = ceil((dhi - dlo) / 10.0); /* at most ~10 labelled decades */
}

static double map_x(const frame* fr, double x) {
  return fr->px0 + (x - fr->xlo) / (fr->xhi - fr->xlo) * (fr->px1 - fr->px0);
}

/* Pixel row of y; on a log axis values at or below the floor sit on the floor. */
static double map_y(const frame* fr, double y) {
  double v = y;
  if (fr->log) v = y > 0 ? fmax(log10(y), fr->ylo) : fr->ylo;
  return fr->py1 - (v - fr->ylo) / (fr->yhi - fr->ylo) * (fr->py1 - fr->py0);
}

static void draw_x_axis(FILE* f, const frame* fr, const char* title) {
  for (int k = 0;; k++) {
    double x = fr->xlo + k * fr->xstep;
    if (x > fr->xhi + 1e-9 * fr->xstep) break;
    double px = map_x(fr, x);
    if (fabs(x) < 1e-9 * fr->xstep) x = 0; /* no "-0" */
    fprintf(f,
            "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"grid\"/>\n"
            "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"axis\"/>\n"
            "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" class=\"tick\">%g</text>\n",
            px, fr->py0, px, fr->py1, px, fr->py1, px, fr->py1 + 5, px, fr->py1 + 19, x);
  }
  fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" class=\"axtitle\">",
          (fr->px0 + fr->px1) / 2, fr->py1 + 40);
  xml_text(f, title);
  fputs("</text>\n", f);
}

static void y_tick(FILE* f, const frame* fr, double py, const char* label, bool grid) {
  if (grid)
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"grid\"/>\n", fr->px0,
            py, fr->px1, py);
  fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"axis\"/>\n",
          fr->px0 - (label ? 5 : 3), py, fr->px0, py);
  if (label)
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" class=\"tick\">%s</text>\n",
            fr->px0 - 8, py + 4, label);
}

static void draw_y_axis(FILE* f, const frame* fr, const char* title) {
  char lab[32];
  if (fr->log) {
    for (int d = (int)fr->ylo; d <= (int)fr->yhi; d++) {
      bool labelled = (int)(d - fr->ylo) % (int)fr->ystep == 0;
      snprintf(lab, sizeof lab, "1e%d", d);
      y_tick(f, fr, map_y(fr, pow(10.0, d)), labelled ? lab : NULL, true);
      for (int m = 2; m <= 9 && d < (int)fr->yhi; m++) /* minor ticks inside the decade */
        y_tick(f, fr, map_y(fr, m * pow(10.0, d)), NULL, false);
    }
  } else {
    for (int k = 0;; k++) {
      double y = fr->ylo + k * fr->ystep;
      if (y > fr->yhi + 1e-9 * fr->ystep) break;
      if (fabs(y) < 1e-9 * fr->ystep) y = 0;
      snprintf(lab, sizeof lab, "%g", y);
      y_tick(f, fr, map_y(fr, y), lab, true);
    }
  }
  double cy = (fr->py0 + fr->py1) / 2;
  fprintf(f,
          "<text x=\"%d\" y=\"%.1f\" text-anchor=\"middle\" class=\"axtitle\" "
          "transform=\"rotate(-90 %d %.1f)\">",
          22, cy, 22, cy);
  xml_text(f, title);
  fputs("</text>\n", f);
}

/* ---- labels ---------------------------------------------------------------------------- */

/* A label position relative to its marker: offset of the text anchor and alignment. */
typedef struct slot {
  double dx, dy; /* pixels from the marker centre to the text's anchor/baseline */
  int align;     /* -1 end (text to the left), 0 middle, 1 start (text to the right) */
} slot;

/* Candidate positions, nearest first; the far ones get a leader line. */
static int make_slots(slot* out, int cap) {
  static const slot near[] = {{9, 4, 1},  {-9, 4, -1}, {0, -10, 0},  {0, 19, 0},
                              {7, -7, 1}, {7, 15, 1},  {-7, -7, -1}, {-7, 15, -1}};
  int n = 0;
  for (size_t i = 0; i < sizeof near / sizeof near[0] && n < cap; i++) out[n++] = near[i];
  for (int k = 1; k <= 7 && n + 4 <= cap; k++) {
    double up = -(6 + 14.0 * k), down = 14 + 14.0 * k, dx = 10 + 2.0 * k;
    out[n++] = (slot){dx, up, 1};
    out[n++] = (slot){dx, down, 1};
    out[n++] = (slot){-dx, up, -1};
    out[n++] = (slot){-dx, down, -1};
  }
  return n;
}

static box label_box(double px, double py, const slot* s, double w) {
  double ax = px + s->dx, base = py + s->dy;
  double x0 = s->align > 0 ? ax : s->align < 0 ? ax - w : ax - w / 2;
  return (box){x0 - 1, base - FONT_PX + 2, x0 + w + 1, base + 3};
}

static double overlap(box a, box b) {
  double w = fmin(a.x1, b.x1) - fmax(a.x0, b.x0), h = fmin(a.y1, b.y1) - fmax(a.y0, b.y0);
  return w > 0 && h > 0 ? w * h : 0;
}

/* Area of b outside the bounds r. */
static double outside(box b, box r) { return (b.x1 - b.x0) * (b.y1 - b.y0) - overlap(b, r); }

/* Picks, for each point, the first slot whose label box overlaps nothing placed so far
 * (markers, earlier labels) and stays inside bounds, else the least overlapping one. */
static void place_labels(const box* markers, const double* px, const double* py,
                         const double* widths, int n, box bounds, const slot* slots, int n_slots,
                         int* chosen, box* placed) {
  for (int i = 0; i < n; i++) {
    double best = INFINITY;
    chosen[i] = 0;
    for (int s = 0; s < n_slots && best > 0; s++) {
      box b = label_box(px[i], py[i], &slots[s], widths[i]);
      double cost = 50 * outside(b, bounds);
      for (int j = 0; j < n; j++) cost += overlap(b, markers[j]);
      for (int j = 0; j < i; j++) cost += overlap(b, placed[j]);
      cost += s * 0.01; /* prefer nearer slots among equal overlaps */
      if (cost < best - 0.005) best = cost, chosen[i] = s;
      if (cost < 1) best = 0; /* nothing overlapped: take it */
    }
    placed[i] = label_box(px[i], py[i], &slots[chosen[i]], widths[i]);
  }
}

/* Per-point scratch arrays of draw_points (all [n_points], drawable points first). */
typedef struct point_px {
  double* px;    /* marker centre, pixels */
  double* py;    /* marker centre, pixels */
  double* width; /* estimated label width, pixels */
  box* marker;   /* marker bounds with a 1-pixel margin */
  box* placed;   /* chosen label bounds */
  int* chosen;   /* chosen slot index */
  int* idx;      /* index into the svg_scatter's points */
} point_px;

static void draw_marker(FILE* f, const svg_point* p, bool hollow, double x, double y) {
  const char* col = k_palette[((p->group % 8) + 8) % 8];
  fprintf(f,
          "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%d\" fill=\"%s\" stroke=\"%s\" "
          "stroke-width=\"%s\"><title>",
          x, y, MARKER_R, hollow ? "white" : col, hollow ? col : "#222", hollow ? "2" : "0.8");
  xml_text(f, p->label);
  fprintf(f, ": x = %g, y = %g</title></circle>\n", p->x, p->y);
}

static void draw_label(FILE* f, const svg_point* p, const slot* sl, box b, double x, double y) {
  if (fabs(sl->dy) > 20) { /* far slot: a leader line from the marker to the label */
    double lx = sl->align > 0 ? b.x0 : sl->align < 0 ? b.x1 : (b.x0 + b.x1) / 2;
    double ly = sl->dy < 0 ? b.y1 - 1 : b.y0 + 1;
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"leader\"/>\n", x, y,
            lx, ly);
  }
  const char* anchor = sl->align > 0 ? "start" : sl->align < 0 ? "end" : "middle";
  fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\" class=\"label\">", x + sl->dx,
          y + sl->dy, anchor);
  xml_text(f, p->label);
  fputs("</text>\n", f);
}

/* Places the labels of the drawable points and draws markers, then labels on top. */
static void draw_placed(FILE* f, const svg_scatter* s, const frame* fr, point_px* q) {
  slot slots[64];
  int n_slots = make_slots(slots, 64);
  int m = 0; /* drawable points, compacted through idx */
  for (int i = 0; i < s->n_points; i++) {
    const svg_point* p = &s->points[i];
    if (!point_ok(p, fr->log)) continue;
    q->idx[m] = i;
    q->px[m] = map_x(fr, p->x), q->py[m] = map_y(fr, p->y);
    q->width[m] = text_width(p->label);
    double r = MARKER_R + 1;
    q->marker[m] = (box){q->px[m] - r, q->py[m] - r, q->px[m] + r, q->py[m] + r};
    m++;
  }
  box bounds = {fr->px0 + 2, fr->py0 + 2, fr->px1 - 2, fr->py1 - 2};
  place_labels(q->marker, q->px, q->py, q->width, m, bounds, slots, n_slots, q->chosen, q->placed);
  for (int k = 0; k < m; k++) {
    const svg_point* p = &s->points[q->idx[k]];
    draw_marker(f, p, clamped(p, fr->log), q->px[k], q->py[k]);
  }
  for (int k = 0; k < m; k++) {
    const svg_point* p = &s->points[q->idx[k]];
    if (p->label && *p->label)
      draw_label(f, p, &slots[q->chosen[k]], q->placed[k], q->px[k], q->py[k]);
  }
}

static bool draw_points(FILE* f, const svg_scatter* s, const frame* fr) {
  size_t n = (size_t)(s->n_points > 0 ? s->n_points : 0) + 1;
  point_px q = {calloc(n, sizeof(double)), calloc(n, sizeof(double)), calloc(n, sizeof(double)),
                calloc(n, sizeof(box)),    calloc(n, sizeof(box)),    calloc(n, sizeof(int)),
                calloc(n, sizeof(int))};
  bool ok = q.px && q.py && q.width && q.marker && q.placed && q.chosen && q.idx;
  if (ok) draw_placed(f, s, fr, &q);
  free(q.px), free(q.py), free(q.width), free(q.marker), free(q.placed), free(q.chosen);
  free(q.idx);
  return ok;
}

/* ---- document -------------------------------------------------------------------------- */

static void draw_titles(FILE* f, const svg_scatter* s, int w) {
  if (s->title) {
    fprintf(f, "<text x=\"%d\" y=\"24\" text-anchor=\"middle\" class=\"title\">", w / 2);
    xml_text(f, s->title);
    fputs("</text>\n", f);
  }
  if (s->subtitle) {
    fprintf(f, "<text x=\"%d\" y=\"42\" text-anchor=\"middle\" class=\"sub\">", w / 2);
    xml_text(f, s->subtitle);
    fputs("</text>\n", f);
  }
}

static void draw_floor_note(FILE* f, const svg_scatter* s, const frame* fr, int h) {
  bool any = false;
  for (int i = 0; i < s->n_points; i++)
    any |= point_ok(&s->points[i], fr->log) && clamped(&s->points[i], fr->log);
  if (!any || !s->floor_note) return;
  fprintf(f, "<text x=\"%.1f\" y=\"%d\" class=\"sub\">", fr->px0, h - 14);
  xml_text(f, s->floor_note);
  fputs("</text>\n", f);
}

bool svg_write_scatter(FILE* f, const svg_scatter* s) {
  int w = s->width > 0 ? s->width : DEFAULT_W, h = s->height > 0 ? s->height : DEFAULT_H;
  if (w < 240) w = 240;
  if (h < 200) h = 200;
  frame fr;
  make_frame(s, w, h, &fr);
  fprintf(f,
          "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
          "viewBox=\"0 0 %d %d\" font-family=\"DejaVu Sans, Arial, Helvetica, sans-serif\">\n"
          "<style>\n"
          "  .grid { stroke: #e4e4e4; stroke-width: 1; }\n"
          "  .axis { stroke: #333; stroke-width: 1; }\n"
          "  .leader { stroke: #999; stroke-width: 0.8; }\n"
          "  .tick { font-size: %dpx; fill: #333; }\n"
          "  .label { font-size: %dpx; fill: #111; }\n"
          "  .axtitle { font-size: 13px; fill: #111; }\n"
          "  .title { font-size: 16px; font-weight: bold; fill: #111; }\n"
          "  .sub { font-size: 12px; fill: #555; }\n"
          "</style>\n"
          "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"white\"/>\n",
          w, h, w, h, FONT_PX, FONT_PX, w, h);
  draw_titles(f, s, w);
  draw_x_axis(f, &fr, s->x_title);
  draw_y_axis(f, &fr, s->y_title);
  fprintf(f,
          "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
          "class=\"axis\"/>\n",
          fr.px0, fr.py0, fr.px1 - fr.px0, fr.py1 - fr.py0);
  bool ok = draw_points(f, s, &fr);
  draw_floor_note(f, s, &fr, h);
  fputs("</svg>\n", f);
  return ok && !ferror(f);
}
