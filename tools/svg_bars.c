/* svg_bars.c: writes a horizontal bar chart as a standalone SVG document (see svg_bars.h):
 * labels in a left column sized to the longest one, bars from the axis origin (0, or the
 * floor decade on a log axis), vertical grid lines at "nice" linear ticks or at decades,
 * and each bar's value printed just past its end. */
#include "svg_bars.h"

#include <math.h>
#include <string.h>

enum {
  DEFAULT_W = 760, /* pixels */
  FONT_PX = 12,    /* label and tick font size */
  ROW_H = 22,      /* pixels per bar row */
  BAR_H = 14,      /* bar thickness */
  TOP = 58,        /* room for the titles */
  BOTTOM = 52,     /* room for the ticks and the axis title */
  MAX_DECADES = 40 /* log axis span limit (keeps absurd inputs drawable) */
};

static const char* const k_palette[8] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                         "#9467bd", "#8c564b", "#e377c2", "#17becf"};

/* Mapping from data to pixels along the value axis. */
typedef struct axis {
  double px0, px1; /* left and right pixel of the plot area */
  bool log;        /* log-10 axis */
  double lo, hi;   /* range: data units, or decades (log10) on a log axis */
  double step;     /* tick spacing: data units, or decades per labelled tick */
} axis;

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

/* Tick spacing of 1, 2 or 5 x 10^k giving about `ticks` intervals over span. */
static double nice_step(double span, int ticks) {
  double raw = span / ticks;
  double mag = pow(10.0, floor(log10(raw)));
  double norm = raw / mag;
  return (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
}

static void value_text(const svg_bar* b, char* out, size_t cap) {
  if (b->value_text)
    snprintf(out, cap, "%s", b->value_text);
  else
    snprintf(out, cap, "%.3g", b->value);
}

/* Axis range from the bar values. */
static void make_axis(const svg_hbars* c, axis* ax) {
  double vmin = INFINITY, vmax = -INFINITY;
  for (int i = 0; i < c->n_bars; i++) {
    double v = c->bars[i].value;
    if (!isfinite(v) || (c->x_log && v <= 0)) continue;
    vmin = fmin(vmin, v), vmax = fmax(vmax, v);
  }
  ax->log = c->x_log;
  if (ax->log) {
    double dlo = vmin <= vmax ? floor(log10(vmin)) : -6;
    double dhi = vmin <= vmax ? ceil(log10(vmax)) : dlo + 1;
    if (dhi <= dlo) dhi = dlo + 1;
    if (dhi - dlo > MAX_DECADES) dlo = dhi - MAX_DECADES;
    ax->lo = dlo, ax->hi = dhi;
    ax->step = ceil((dhi - dlo) / 10.0);
    return;
  }
  double hi = vmin <= vmax ? fmax(vmax, 0) : 1;
  if (!(hi > 0)) hi = 1;
  ax->lo = 0;
  ax->step = nice_step(hi * 1.02, 6);
  ax->hi = ceil(hi * 1.02 / ax->step) * ax->step;
}

/* Pixel column of v; on a log axis values at or below the floor sit on the floor. */
static double map_x(const axis* ax, double v) {
  double u = v;
  if (ax->log) u = v > 0 ? fmax(log10(v), ax->lo) : ax->lo;
  u = fmin(fmax(u, ax->lo), ax->hi);
  return ax->px0 + (u - ax->lo) / (ax->hi - ax->lo) * (ax->px1 - ax->px0);
}

static void tick(FILE* f, const axis* ax, double v, const char* label, double y0, double y1) {
  double px = map_x(ax, v);
  fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"grid\"/>\n", px, y0, px,
          y1);
  fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"axis\"/>\n", px, y1, px,
          y1 + (label ? 5 : 3));
  if (label)
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" class=\"tick\">%s</text>\n", px,
            y1 + 19, label);
}

static void draw_axis(FILE* f, const axis* ax, const char* title, double y0, double y1) {
  char lab[32];
  if (ax->log) {
    for (int d = (int)ax->lo; d <= (int)ax->hi; d++) {
      bool labelled = (int)(d - ax->lo) % (int)ax->step == 0;
      snprintf(lab, sizeof lab, "1e%d", d);
      tick(f, ax, pow(10.0, d), labelled ? lab : NULL, y0, y1);
      for (int m = 2; m <= 9 && d < (int)ax->hi; m++) {        /* minor ticks inside the decade */
        bool few = ax->hi - ax->lo <= 2 && (m == 2 || m == 5); /* labelled when few decades */
        snprintf(lab, sizeof lab, "%de%d", m, d);
        tick(f, ax, m * pow(10.0, d), few ? lab : NULL, y0, y1);
      }
    }
  } else {
    for (int k = 0;; k++) {
      double v = ax->lo + k * ax->step;
      if (v > ax->hi + 1e-9 * ax->step) break;
      snprintf(lab, sizeof lab, "%g", fabs(v) < 1e-12 * ax->step ? 0.0 : v);
      tick(f, ax, v, lab, y0, y1);
    }
  }
  fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" class=\"axtitle\">",
          (ax->px0 + ax->px1) / 2, y1 + 40);
  xml_text(f, title);
  fputs("</text>\n", f);
}

static void draw_bar(FILE* f, const axis* ax, const svg_bar* b, double y, double label_x) {
  char vt[64];
  value_text(b, vt, sizeof vt);
  fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" class=\"label\">", label_x,
          y + BAR_H / 2.0 + 4);
  xml_text(f, b->label);
  fputs("</text>\n", f);
  if (!isfinite(b->value)) return;
  double x0 = ax->px0, x1 = map_x(ax, b->value);
  if (x1 - x0 >= 0.5) {
    const char* col = k_palette[((b->group % 8) + 8) % 8];
    fprintf(f,
            "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%d\" fill=\"%s\" "
            "stroke=\"#222\" stroke-width=\"0.6\"><title>",
            x0, y, x1 - x0, BAR_H, col);
    xml_text(f, b->label);
    fputs(": ", f);
    xml_text(f, vt);
    fputs("</title></rect>\n", f);
  }
  fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" class=\"value\">", x1 + 5, y + BAR_H / 2.0 + 4);
  xml_text(f, vt);
  fputs("</text>\n", f);
}

static void draw_titles(FILE* f, const svg_hbars* c, int w) {
  if (c->title) {
    fprintf(f, "<text x=\"%d\" y=\"24\" text-anchor=\"middle\" class=\"title\">", w / 2);
    xml_text(f, c->title);
    fputs("</text>\n", f);
  }
  if (c->subtitle) {
    fprintf(f, "<text x=\"%d\" y=\"42\" text-anchor=\"middle\" class=\"sub\">", w / 2);
    xml_text(f, c->subtitle);
    fputs("</text>\n", f);
  }
}

bool svg_write_hbars(FILE* f, const svg_hbars* c) {
  int n = c->n_bars > 0 ? c->n_bars : 0;
  int w = c->width > 0 ? c->width : DEFAULT_W;
  if (w < 320) w = 320;
  double label_w = 0, value_w = 0;
  for (int i = 0; i < n; i++) {
    char vt[64];
    value_text(&c->bars[i], vt, sizeof vt);
    label_w = fmax(label_w, text_width(c->bars[i].label));
    value_w = fmax(value_w, text_width(vt));
  }
  label_w = fmin(label_w, w * 0.4);
  int h = TOP + n * ROW_H + BOTTOM + (c->note ? 24 : 0);
  double py0 = TOP, py1 = TOP + n * ROW_H + 6;
  axis ax;
  make_axis(c, &ax);
  ax.px0 = 16 + label_w + 8;
  ax.px1 = w - 16 - value_w - 8;
  if (ax.px1 < ax.px0 + 60) ax.px1 = ax.px0 + 60;
  fprintf(f,
          "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
          "viewBox=\"0 0 %d %d\" font-family=\"DejaVu Sans, Arial, Helvetica, sans-serif\">\n"
          "<style>\n"
          "  .grid { stroke: #e4e4e4; stroke-width: 1; }\n"
          "  .axis { stroke: #333; stroke-width: 1; }\n"
          "  .tick { font-size: %dpx; fill: #333; }\n"
          "  .label { font-size: %dpx; fill: #111; }\n"
          "  .value { font-size: %dpx; fill: #333; }\n"
          "  .axtitle { font-size: 13px; fill: #111; }\n"
          "  .title { font-size: 16px; font-weight: bold; fill: #111; }\n"
          "  .sub { font-size: 12px; fill: #555; }\n"
          "</style>\n"
          "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"white\"/>\n",
          w, h, w, h, FONT_PX, FONT_PX, FONT_PX, w, h);
  draw_titles(f, c, w);
  draw_axis(f, &ax, c->x_title, py0, py1);
  for (int i = 0; i < n; i++)
    draw_bar(f, &ax, &c->bars[i], TOP + i * ROW_H + (ROW_H - BAR_H) / 2.0, ax.px0 - 8);
  fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"axis\"/>\n", ax.px0,
          py0, ax.px0, py1);
  fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"axis\"/>\n", ax.px0,
          py1, ax.px1, py1);
  if (c->note) {
    fprintf(f, "<text x=\"%.1f\" y=\"%d\" class=\"sub\">", ax.px0, h - 10);
    xml_text(f, c->note);
    fputs("</text>\n", f);
  }
  fputs("</svg>\n", f);
  return !ferror(f);
}
